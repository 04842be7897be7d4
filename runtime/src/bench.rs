//! Side-by-side latency of create → start → wait → delete of `busybox true`
//! from one bundle for berth-monitor and the OCI runtimes installed here (runc,
//! crun). Shared by `berth-bench-runtime` and the CRI driver `berth-bench`,
//! which folds these rows into its report. Needs root (it mounts a tmpfs) and
//! /bin/busybox.

use crate::{Container, Status};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One runtime's samples, or why it has none.
#[derive(Debug, Clone)]
pub struct RuntimeResult {
    /// `berth-monitor`, `runc` or `crun`.
    pub runtime: String,
    pub samples: std::result::Result<Vec<Duration>, String>,
}

/// Runs the comparison: a warm-up then `iterations` timed runs per runtime,
/// berth-monitor (at `monitor`) first. A runtime that is not installed or fails
/// has an `Err` with the reason; crun's refusal of hybrid cgroups is reported as
/// "refused hybrid cgroups: …". Errors setting up the shared bundle are returned.
pub fn compare(
    iterations: usize,
    monitor: &Path,
) -> std::result::Result<Vec<RuntimeResult>, String> {
    in_tmpfs_workdir(|work| compare_in(iterations, monitor, work))
}

/// Runs `f` in a fresh work dir on tmpfs (state dirs live on tmpfs as /run
/// does on a real node, for every runtime), unmounted and removed after.
fn in_tmpfs_workdir<T>(
    f: impl FnOnce(&Path) -> std::result::Result<T, String>,
) -> std::result::Result<T, String> {
    let work = std::env::temp_dir().join(format!("berth-bench-rt-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| format!("mkdir {}: {e}", work.display()))?;
    nix::mount::mount(
        Some("tmpfs"),
        &work,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=256m"),
    )
    .map_err(|e| format!("mount tmpfs on {} (run as root): {e}", work.display()))?;
    let result = f(&work);
    let _ = nix::mount::umount2(&work, nix::mount::MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// create → start → wait → delete with several berth-monitor binaries,
/// taking turns every iteration so that a noisy host (other builds, CPU
/// frequency) weighs on all of them alike: the way to compare two builds.
/// Rows are named after the binaries' paths.
pub fn compare_monitors(
    iterations: usize,
    monitors: &[PathBuf],
) -> std::result::Result<Vec<RuntimeResult>, String> {
    in_tmpfs_workdir(|work| {
        let bundle = work.join("bundle");
        build_rootfs(&bundle.join("rootfs"))?;
        std::fs::write(bundle.join("config.json"), spec_json())
            .map_err(|e| format!("write config.json: {e}"))?;
        let mut samples = vec![Ok(Vec::new()); monitors.len()];
        // The first round warms up (page cache, cgroup parents) and is dropped.
        for i in 0..=iterations {
            for (m, (monitor, out)) in monitors.iter().zip(samples.iter_mut()).enumerate() {
                let Ok(v) = out else { continue };
                let n = if i == 0 {
                    usize::MAX - m
                } else {
                    i * monitors.len() + m
                };
                match berth_once(monitor, &bundle, work, n) {
                    Ok(d) if i > 0 => v.push(d),
                    Ok(_) => {}
                    Err(e) => *out = Err(e),
                }
            }
        }
        Ok(monitors
            .iter()
            .zip(samples)
            .map(|(m, samples)| RuntimeResult {
                runtime: m.display().to_string(),
                samples,
            })
            .collect())
    })
}

fn compare_in(
    iterations: usize,
    monitor: &Path,
    work: &Path,
) -> std::result::Result<Vec<RuntimeResult>, String> {
    let bundle = work.join("bundle");
    build_rootfs(&bundle.join("rootfs"))?;
    std::fs::write(bundle.join("config.json"), spec_json())
        .map_err(|e| format!("write config.json: {e}"))?;
    let mut results = vec![RuntimeResult {
        runtime: "berth-monitor".into(),
        samples: run_n(iterations, |i| berth_once(monitor, &bundle, work, i)),
    }];
    for rt in ["runc", "crun"] {
        let samples = if Command::new(rt).arg("--version").output().is_ok() {
            run_n(iterations, |i| oci_once(rt, &bundle, &work.join(rt), i)).map_err(|e| {
                if e.contains("hybrid") {
                    format!("refused hybrid cgroups: {e}")
                } else {
                    e
                }
            })
        } else {
            Err(format!("{rt} not installed"))
        };
        results.push(RuntimeResult {
            runtime: rt.into(),
            samples,
        });
    }
    Ok(results)
}

/// The `p`th percentile (0..=100, lower rank) of `v`, which must not be empty.
pub fn percentile(v: &[Duration], p: usize) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    s[((s.len() - 1) * p) / 100]
}

fn run_n(
    n: usize,
    mut f: impl FnMut(usize) -> std::result::Result<Duration, String>,
) -> std::result::Result<Vec<Duration>, String> {
    f(usize::MAX)?; // warm-up
    (0..n).map(&mut f).collect()
}

fn berth_once(
    monitor: &Path,
    bundle: &Path,
    work: &Path,
    i: usize,
) -> std::result::Result<Duration, String> {
    let id = format!("bench-berth-{i}");
    let state = work.join("state").join(&id);
    let t = Instant::now();
    let out = Command::new(monitor)
        .args(["create", "--id", &id, "--bundle"])
        .arg(bundle)
        .arg("--state-dir")
        .arg(&state)
        .output()
        .map_err(|e| format!("{}: {e}", monitor.display()))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    let c = Container::load(&state).map_err(|e| e.to_string())?;
    c.start().map_err(|e| e.to_string())?;
    loop {
        if c.state().map_err(|e| e.to_string())?.status == Status::Stopped {
            break;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    c.delete(false).map_err(|e| e.to_string())?;
    Ok(t.elapsed())
}

fn oci_once(
    rt: &str,
    bundle: &Path,
    root: &Path,
    i: usize,
) -> std::result::Result<Duration, String> {
    let id = format!("bench-{rt}-{i}");
    // The container inherits `create`'s stdio: give it files, not pipes, or
    // waiting for the command's output would wait for the container.
    let errf = root.join(format!("{id}.err"));
    let run = |args: &[&str]| -> std::result::Result<String, String> {
        std::fs::create_dir_all(root).map_err(|e| e.to_string())?;
        let err = std::fs::File::create(&errf).map_err(|e| e.to_string())?;
        let out = Command::new(rt)
            .arg("--root")
            .arg(root)
            .args(args)
            .stdin(Stdio::null())
            .stderr(err)
            .stdout(if args[0] == "state" {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            let msg = std::fs::read_to_string(&errf).unwrap_or_default();
            Err(format!("{rt} {}: {}", args[0], msg.trim()))
        }
    };
    let b = bundle.to_string_lossy().into_owned();
    let t = Instant::now();
    run(&["create", "--bundle", &b, &id])?;
    run(&["start", &id])?;
    loop {
        let s = run(&["state", &id])?;
        if s.contains("\"stopped\"") {
            break;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    run(&["delete", &id])?;
    Ok(t.elapsed())
}

fn build_rootfs(root: &Path) -> std::result::Result<(), String> {
    for d in ["bin", "proc", "dev", "sys", "tmp", "etc"] {
        std::fs::create_dir_all(root.join(d)).map_err(|e| format!("mkdir rootfs: {e}"))?;
    }
    let bb = root.join("bin/busybox");
    std::fs::copy("/bin/busybox", &bb)
        .map_err(|e| format!("copy /bin/busybox (install busybox-static): {e}"))?;
    for a in ["true", "sh"] {
        let _ = std::fs::hard_link(&bb, root.join("bin").join(a));
    }
    Ok(())
}

fn spec_json() -> String {
    serde_json::json!({
        "ociVersion": "1.0.2",
        "root": {"path": "rootfs"},
        "hostname": "bench",
        "process": {"args": ["/bin/true"], "cwd": "/", "env": ["PATH=/bin"],
                    "user": {"uid": 0, "gid": 0}, "noNewPrivileges": true},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]}
        ],
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
            "resources": {"devices": [{"allow": false, "access": "rwm"}]}
        }
    })
    .to_string()
}

/// The berth-monitor next to the running executable, else the one on $PATH.
pub fn default_monitor() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("berth-monitor")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("berth-monitor"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_takes_the_lower_rank() {
        let v: Vec<Duration> = [5u64, 1, 4, 2, 3]
            .iter()
            .map(|m| Duration::from_millis(*m))
            .collect();
        assert_eq!(percentile(&v, 50), Duration::from_millis(3));
        assert_eq!(percentile(&v, 95), Duration::from_millis(4));
        assert_eq!(percentile(&v, 100), Duration::from_millis(5));
    }
}

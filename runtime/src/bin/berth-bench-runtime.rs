//! Side-by-side latency of create → start → wait → delete of `busybox true`
//! for berth-monitor and runc (and crun when it works on this host).
//!
//! `berth-bench-runtime [--iterations N] [--monitor PATH]`; prints p50/p95 per
//! runtime and the ratio to berth. Needs root and /bin/busybox.

use berth_runtime::{Container, Status};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |k: &str| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let iterations: usize = get("--iterations")
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let monitor = get("--monitor").map(PathBuf::from).unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("berth-monitor")))
            .unwrap_or_else(|| PathBuf::from("berth-monitor"))
    });
    let work = std::env::temp_dir().join(format!("berth-bench-{}", std::process::id()));
    // State dirs live on tmpfs as /run does on a real node, for both runtimes.
    std::fs::create_dir_all(&work).expect("mkdir work dir");
    nix::mount::mount(
        Some("tmpfs"),
        &work,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=256m"),
    )
    .expect("mount tmpfs (run as root)");
    let bundle = work.join("bundle");
    build_rootfs(&bundle.join("rootfs"));
    let spec = spec_json();
    std::fs::write(bundle.join("config.json"), &spec).expect("write config.json");

    let mut results: Vec<(String, Result<Vec<Duration>, String>)> = Vec::new();
    results.push((
        "berth-monitor".into(),
        bench(iterations, |i| berth_once(&monitor, &bundle, &work, i)),
    ));
    for rt in ["runc", "crun"] {
        let r = if Command::new(rt).arg("--version").output().is_ok() {
            bench(iterations, |i| oci_once(rt, &bundle, &work.join(rt), i))
        } else {
            Err(format!("{rt} not installed"))
        };
        results.push((rt.into(), r));
    }
    let _ = nix::mount::umount2(&work, nix::mount::MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir_all(&work);

    let base = results[0].1.as_ref().ok().map(|v| pct(v, 50));
    println!("create+start+wait+delete of busybox true, {iterations} iterations");
    println!(
        "{:<14} {:>10} {:>10} {:>12}",
        "runtime", "p50 ms", "p95 ms", "p50 / berth"
    );
    for (name, r) in &results {
        match r {
            Ok(v) => {
                let p50 = pct(v, 50);
                let ratio = base
                    .map(|b| p50.as_secs_f64() / b.as_secs_f64())
                    .unwrap_or(0.0);
                println!(
                    "{name:<14} {:>10.2} {:>10.2} {:>12.2}",
                    p50.as_secs_f64() * 1e3,
                    pct(v, 95).as_secs_f64() * 1e3,
                    ratio
                );
            }
            Err(e) => println!("{name:<14} failed: {e}"),
        }
    }
}

fn pct(v: &[Duration], p: usize) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    s[((s.len() - 1) * p) / 100]
}

fn bench(
    n: usize,
    mut f: impl FnMut(usize) -> Result<Duration, String>,
) -> Result<Vec<Duration>, String> {
    f(usize::MAX)?; // warm-up
    (0..n).map(&mut f).collect()
}

fn berth_once(monitor: &Path, bundle: &Path, work: &Path, i: usize) -> Result<Duration, String> {
    let id = format!("bench-berth-{i}");
    let state = work.join("state").join(&id);
    let t = Instant::now();
    let out = Command::new(monitor)
        .args(["create", "--id", &id, "--bundle"])
        .arg(bundle)
        .arg("--state-dir")
        .arg(&state)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
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

fn oci_once(rt: &str, bundle: &Path, root: &Path, i: usize) -> Result<Duration, String> {
    let id = format!("bench-{rt}-{i}");
    // The container inherits `create`'s stdio: give it files, not pipes, or
    // waiting for the command's output would wait for the container.
    let errf = root.join(format!("{id}.err"));
    let run = |args: &[&str]| -> Result<String, String> {
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

fn build_rootfs(root: &Path) {
    for d in ["bin", "proc", "dev", "sys", "tmp", "etc"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir rootfs");
    }
    let bb = root.join("bin/busybox");
    std::fs::copy("/bin/busybox", &bb).expect("copy /bin/busybox (install busybox-static)");
    for a in ["true", "sh"] {
        let _ = std::fs::hard_link(&bb, root.join("bin").join(a));
    }
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

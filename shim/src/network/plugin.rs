//! Running one CNI plugin binary: environment and stdin as the spec defines
//! them, stdout/stderr captured, and a hard timeout. berthd runs tokio, so the
//! plugin is a plain fork+exec (`tokio::process`), in its own process group so
//! a timeout can kill whatever the plugin started too.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::result::PluginError;
use crate::error::{Error, Result};

/// Stderr beyond this is cut from error messages (the tail is kept).
const STDERR_LIMIT: usize = 4096;

/// The per-pod part of a plugin call, shared by every plugin of a list.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS`; empty for DEL of a pod whose namespace is already gone.
    pub netns: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS`.
    pub args: String,
    /// Plugin search path; also `CNI_PATH`.
    pub bin_dirs: Vec<PathBuf>,
    /// Limit for one plugin run.
    pub timeout: Duration,
}

/// The CNI verbs berthd uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Set up the pod's interface.
    Add,
    /// Tear it down.
    Del,
    /// Verify it is as ADD left it.
    Check,
}

impl Command {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
        }
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first executable file named `plugin` in `dirs`.
pub fn find(dirs: &[PathBuf], plugin: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    dirs.iter().map(|d| d.join(plugin)).find(|p| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// Runs `plugin` with `cmd` and the given stdin config; returns its stdout.
pub async fn run(
    inv: &Invocation,
    cmd: Command,
    plugin: &str,
    network: &str,
    stdin: Vec<u8>,
) -> Result<Vec<u8>> {
    let what = format!(
        "cni plugin {plugin} (network {network}) {cmd} for pod {}",
        inv.container_id
    );
    let path = find(&inv.bin_dirs, plugin).ok_or_else(|| {
        Error::FailedPrecondition(format!(
            "{what}: plugin binary not found in {}",
            join_paths(&inv.bin_dirs)
        ))
    })?;
    tracing::debug!(plugin, network, command = %cmd, pod_sandbox_id = %inv.container_id, "running cni plugin");
    let mut child = spawn(inv, cmd, &path)
        .await
        .map_err(|e| Error::Internal(format!("{what}: cannot start {}: {e}", path.display())))?;
    let pid = child.id();
    let mut child_in = child.stdin.take().expect("stdin is piped");
    let child_out = child.stdout.take().expect("stdout is piped");
    let child_err = child.stderr.take().expect("stderr is piped");

    let io = async {
        let write = async {
            // A plugin may exit without reading stdin; that is its business.
            let _ = child_in.write_all(&stdin).await;
            drop(child_in);
        };
        let ((), out, err) = tokio::join!(write, read_all(child_out), read_all(child_err));
        let status = child.wait().await;
        (status, out, err)
    };
    let (status, out, err) = match tokio::time::timeout(inv.timeout, io).await {
        Ok(done) => done,
        Err(_) => {
            if let Some(pid) = pid {
                kill_group(pid);
            }
            let _ = child.wait().await;
            return Err(Error::DeadlineExceeded(format!(
                "{what}: did not finish within {}s and was killed",
                inv.timeout.as_secs_f64()
            )));
        }
    };
    let status =
        status.map_err(|e| Error::Internal(format!("{what}: waiting for the plugin: {e}")))?;
    if status.success() {
        return Ok(out);
    }
    let mut msg = format!("{what} failed: ");
    match PluginError::parse(&out) {
        Some(e) => msg.push_str(&e.to_string()),
        None => {
            msg.push_str(&status.to_string());
            let out = String::from_utf8_lossy(&out);
            if !out.trim().is_empty() {
                msg.push_str(&format!("; stdout: {}", tail(out.trim())));
            }
        }
    }
    let err = String::from_utf8_lossy(&err);
    if !err.trim().is_empty() {
        msg.push_str(&format!("; stderr: {}", tail(err.trim())));
    }
    Err(Error::Internal(msg))
}

async fn spawn(
    inv: &Invocation,
    cmd: Command,
    path: &Path,
) -> std::io::Result<tokio::process::Child> {
    let mut c = tokio::process::Command::new(path);
    c.env("CNI_COMMAND", cmd.as_str())
        .env("CNI_CONTAINERID", &inv.container_id)
        .env("CNI_NETNS", &inv.netns)
        .env("CNI_IFNAME", &inv.ifname)
        .env("CNI_ARGS", &inv.args)
        .env("CNI_PATH", join_paths(&inv.bin_dirs))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // A plugin file that was just written may still be open for writing in a
    // child forked by another thread (ETXTBSY) for a moment; retry briefly.
    let mut tries = 0;
    loop {
        match c.spawn() {
            Err(e) if e.raw_os_error() == Some(libc_etxtbsy()) && tries < 20 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => return other,
        }
    }
}

fn libc_etxtbsy() -> i32 {
    nix::errno::Errno::ETXTBSY as i32
}

fn kill_group(pid: u32) {
    let Ok(pid) = i32::try_from(pid) else { return };
    let pgid = nix::unistd::Pid::from_raw(pid);
    if let Err(e) = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL) {
        tracing::warn!(pid, error = %e, "killing timed-out cni plugin");
    }
}

async fn read_all(mut r: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut buf = Vec::new();
    let _ = r.read_to_end(&mut buf).await;
    buf
}

fn tail(s: &str) -> &str {
    if s.len() <= STDERR_LIMIT {
        return s;
    }
    let mut start = s.len() - STDERR_LIMIT;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

fn join_paths(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, name: &str, body: &str) {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn inv(dir: &Path, timeout_ms: u64) -> Invocation {
        Invocation {
            container_id: "pod1".into(),
            netns: "/run/netns/x".into(),
            ifname: "eth0".into(),
            args: "IgnoreUnknown=1".into(),
            bin_dirs: vec![dir.join("missing"), dir.to_path_buf()],
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    #[tokio::test]
    async fn env_and_stdin_reach_the_plugin() {
        let dir = tempfile::tempdir().unwrap();
        script(
            dir.path(),
            "echoer",
            r#"printf '{"cmd":"%s","id":"%s","netns":"%s","if":"%s","args":"%s","path":"%s","stdin":' "$CNI_COMMAND" "$CNI_CONTAINERID" "$CNI_NETNS" "$CNI_IFNAME" "$CNI_ARGS" "$CNI_PATH"; cat; printf '}'"#,
        );
        let out = run(
            &inv(dir.path(), 5000),
            Command::Check,
            "echoer",
            "n",
            br#"{"a":1}"#.to_vec(),
        )
        .await
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["cmd"], "CHECK");
        assert_eq!(v["id"], "pod1");
        assert_eq!(v["netns"], "/run/netns/x");
        assert_eq!(v["if"], "eth0");
        assert_eq!(v["args"], "IgnoreUnknown=1");
        assert_eq!(
            v["path"],
            format!(
                "{}:{}",
                dir.path().join("missing").display(),
                dir.path().display()
            )
        );
        assert_eq!(v["stdin"]["a"], 1);
    }

    #[tokio::test]
    async fn failures_carry_the_cni_error_and_stderr() {
        let dir = tempfile::tempdir().unwrap();
        script(
            dir.path(),
            "bad",
            r#"echo '{"cniVersion":"1.0.0","code":11,"msg":"try again","details":"busy"}'; echo oops >&2; exit 1"#,
        );
        script(dir.path(), "crash", "echo not-json; exit 3");
        let e = run(&inv(dir.path(), 5000), Command::Add, "bad", "net1", vec![])
            .await
            .unwrap_err()
            .to_string();
        for want in [
            "bad",
            "net1",
            "ADD",
            "pod1",
            "code 11: try again (busy)",
            "stderr: oops",
        ] {
            assert!(e.contains(want), "{e:?} lacks {want:?}");
        }
        let e = run(&inv(dir.path(), 5000), Command::Add, "crash", "n", vec![])
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("exit status: 3") && e.contains("not-json"),
            "{e}"
        );
        let e = run(&inv(dir.path(), 5000), Command::Add, "absent", "n", vec![])
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("not found in"), "{e}");
    }

    #[tokio::test]
    async fn a_hanging_plugin_and_its_children_are_killed() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("child.pid");
        script(
            dir.path(),
            "hang",
            &format!("sleep 30 & echo $! > {}; wait", marker.display()),
        );
        let start = std::time::Instant::now();
        let e = run(&inv(dir.path(), 300), Command::Add, "hang", "n", vec![])
            .await
            .unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(matches!(e, Error::DeadlineExceeded(_)), "{e}");
        assert!(
            e.to_string().contains("hang") && e.to_string().contains("0.3s"),
            "{e}"
        );
        let pid = std::fs::read_to_string(&marker).unwrap();
        // The backgrounded sleep was in the plugin's process group, so it is gone
        // (or a zombie about to be reaped by init).
        std::thread::sleep(Duration::from_millis(100));
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()));
        assert!(
            stat.map(|s| s.contains(") Z ")).unwrap_or(true),
            "child of the plugin survived"
        );
    }
}

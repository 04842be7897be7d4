//! ExecSync: run a command in a running container and return its output and
//! exit code (kubelet's exec probes and `crictl exec -s`). The command runs in
//! `berth-monitor exec`, which joins the container's namespaces and cgroup with
//! the container's own user, env and cwd. On timeout the exec'd process and
//! everything it started are killed and the call fails with DEADLINE_EXCEEDED,
//! which kubelet reads as a probe timeout; a client that cancels the call gets
//! the same kill. Killing only the helper is not enough: its child dies with it
//! (PR_SET_PDEATHSIG) but the child's own children (`sh -c 'sleep 60; ...'`)
//! would live on in the container. So the tree below the helper is frozen
//! (SIGSTOP, so nothing forks any more) and then killed, and the helper is left
//! alive to reap its child and exit.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use berth_proto::v1::{ExecSyncRequest, ExecSyncResponse};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::CriService;
use crate::error::{Error, Result};
use crate::state::new_id;

/// Cap on each of stdout and stderr (what the CRI documents); the rest is drained and dropped.
const OUTPUT_CAP: usize = 16 << 20;
/// How long the helper may take to exit once its tree is killed, before it is
/// killed too.
const HELPER_EXIT_WAIT: Duration = Duration::from_millis(500);

impl CriService {
    pub(crate) async fn exec_sync(&self, req: ExecSyncRequest) -> Result<ExecSyncResponse> {
        if req.cmd.is_empty() || req.cmd[0].is_empty() {
            return Err(Error::InvalidArgument("cmd: empty".into()));
        }
        if req.timeout < 0 {
            return Err(Error::InvalidArgument(format!(
                "timeout: {} is negative",
                req.timeout
            )));
        }
        let lc = &self.lifecycle;
        let rec = lc.running_container(&req.container_id).await?;
        let id = rec.id.clone();
        let process_file = rec.bundle.join(format!("exec-{}.json", &new_id()?[..16]));
        let process = exec_process(&rec.bundle.join("config.json"), &req.cmd, false)?;
        std::fs::write(&process_file, process)
            .map_err(Error::io("write exec process", &process_file))?;
        let result = run(
            lc.exec_helper(&rec.state_dir, &process_file, false),
            req.timeout,
        )
        .await;
        let _ = std::fs::remove_file(&process_file);
        match result {
            Err(Error::DeadlineExceeded(_)) => Err(Error::DeadlineExceeded(format!(
                "command {:?} in container {id} timed out after {}s",
                req.cmd, req.timeout
            ))),
            other => other,
        }
    }
}

/// The container's process (user, env, cwd, capabilities, ...) with `cmd` as
/// args, with or without a terminal.
pub(crate) fn exec_process(
    config_json: &std::path::Path,
    cmd: &[String],
    tty: bool,
) -> Result<Vec<u8>> {
    let spec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(config_json).map_err(Error::io("read bundle config", config_json))?,
    )
    .map_err(|e| Error::Internal(format!("{}: {e}", config_json.display())))?;
    let mut p = spec
        .get("process")
        .cloned()
        .ok_or_else(|| Error::Internal(format!("{}: no process", config_json.display())))?;
    p["args"] = serde_json::json!(cmd);
    p["terminal"] = serde_json::Value::Bool(tty);
    if let Some(o) = p.as_object_mut() {
        o.remove("consoleSize");
    }
    serde_json::to_vec(&p).map_err(|e| Error::Internal(format!("exec process: {e}")))
}

async fn run(mut helper: tokio::process::Command, timeout: i64) -> Result<ExecSyncResponse> {
    let mut child = helper
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Not kill_on_drop: a dropped call kills the tree (TreeGuard) and
        // lets the helper reap its child; tokio reaps the helper.
        .spawn()
        .map_err(|e| Error::Runtime(format!("run berth-monitor exec: {e}")))?;
    let mut guard = TreeGuard(child.id().and_then(|p| i32::try_from(p).ok()));
    let out = child.stdout.take();
    let err = child.stderr.take();
    let work = async {
        let (stdout, stderr, status) =
            tokio::join!(read_capped(out), read_capped(err), child.wait());
        let status = status.map_err(|e| Error::Runtime(format!("wait for exec helper: {e}")))?;
        let exit_code = status
            .code()
            .or_else(|| {
                use std::os::unix::process::ExitStatusExt;
                status.signal().map(|s| 128 + s)
            })
            .unwrap_or(255);
        Ok(ExecSyncResponse {
            stdout: stdout?,
            stderr: stderr?,
            exit_code,
        })
    };
    let finished = if timeout == 0 {
        Some(work.await)
    } else {
        tokio::time::timeout(Duration::from_secs(timeout.unsigned_abs()), work)
            .await
            .ok()
    };
    if let Some(r) = finished {
        // The helper is reaped: its pid may be reused from here on.
        guard.0 = None;
        return r;
    }
    if let Some(pid) = guard.0.take() {
        kill_descendants(pid);
    }
    if tokio::time::timeout(HELPER_EXIT_WAIT, child.wait())
        .await
        .is_err()
    {
        let _ = child.start_kill();
    }
    Err(Error::DeadlineExceeded("exec timed out".into()))
}

/// Kills the exec'd tree below the helper `.0`, then the helper, when dropped
/// armed: the call was cancelled by its client while the command still ran.
/// The helper must go too: cancelled before it had forked (or before its child
/// showed in /proc), it would otherwise fork the command after the scan and
/// wait for it for ever. Killed, its child dies with it (PR_SET_PDEATHSIG, or
/// the child's own parent check if the helper died before the prctl). The
/// helper is not reaped yet when this runs (the guard drops before the
/// `Child`), so its pid cannot have been reused; tokio reaps it afterwards.
struct TreeGuard(Option<i32>);

impl Drop for TreeGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            tracing::debug!(pid, "exec call dropped: killing the exec'd processes");
            kill_descendants(pid);
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// SIGSTOPs every descendant of `root` until a pass finds no new one (a stopped
/// process cannot fork, so the tree stops growing), then SIGKILLs them all.
/// `root` itself is spared: it reaps its child and exits.
fn kill_descendants(root: i32) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let mut frozen: Vec<i32> = Vec::new();
    for _ in 0..16 {
        let new: Vec<i32> = descendants(root)
            .into_iter()
            .filter(|p| !frozen.contains(p))
            .collect();
        if new.is_empty() {
            break;
        }
        for p in &new {
            let _ = kill(Pid::from_raw(*p), Signal::SIGSTOP);
        }
        frozen.extend(new);
    }
    for p in frozen {
        let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
    }
}

/// Every process below `root`, from the parent pids in `/proc/*/stat`.
fn descendants(root: i32) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some(ppid) = stat_ppid(&stat) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut out = Vec::new();
    let mut todo = vec![root];
    while let Some(p) = todo.pop() {
        for c in children.remove(&p).unwrap_or_default() {
            out.push(c);
            todo.push(c);
        }
    }
    out
}

/// The parent pid in a `/proc/<pid>/stat` line. The command name may hold
/// spaces and parentheses, so fields are counted after its last `)`.
fn stat_ppid(stat: &str) -> Option<i32> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Reads a pipe to the end, keeping at most [`OUTPUT_CAP`] bytes.
async fn read_capped(r: Option<impl AsyncRead + Unpin>) -> Result<Vec<u8>> {
    let Some(mut r) = r else {
        return Ok(Vec::new());
    };
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = r
            .read(&mut buf)
            .await
            .map_err(|e| Error::Runtime(format!("read exec output: {e}")))?;
        if n == 0 {
            return Ok(kept);
        }
        let room = OUTPUT_CAP - kept.len();
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_process_keeps_the_container_identity_and_swaps_args() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("config.json");
        std::fs::write(
            &p,
            r#"{"process":{"terminal":true,"consoleSize":{"height":1,"width":2},"user":{"uid":7,"gid":8},"args":["sleep","9"],"env":["A=1"],"cwd":"/w"}}"#,
        )
        .unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&exec_process(&p, &["id".into(), "-u".into()], false).unwrap())
                .unwrap();
        assert_eq!(v["args"], serde_json::json!(["id", "-u"]));
        assert_eq!(v["user"]["uid"], 7);
        assert_eq!(v["env"], serde_json::json!(["A=1"]));
        assert_eq!(v["cwd"], "/w");
        assert_eq!(v["terminal"], false);
        assert!(v.get("consoleSize").is_none());
    }

    #[test]
    fn parent_pid_is_read_past_a_command_name_with_parentheses() {
        assert_eq!(stat_ppid("42 (a) b) S 7 42 42 0 -1"), Some(7));
        assert_eq!(stat_ppid("1 (init) S 0 1 1"), Some(0));
        assert_eq!(stat_ppid("garbage"), None);
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_tree_below_the_helper() {
        // A stand-in helper: a shell whose child starts a grandchild, both
        // sleeping far past the timeout.
        let d = tempfile::tempdir().unwrap();
        let pids = d.path().join("pids");
        let mut c = tokio::process::Command::new("sh");
        c.arg("-c").arg(format!(
            "sh -c 'sleep 300 & echo $! > {p}.g; echo $$ > {p}.c; wait'; exit 0",
            p = pids.display()
        ));
        let err = run(c, 1).await.unwrap_err();
        assert!(matches!(err, Error::DeadlineExceeded(_)), "{err}");
        for f in ["c", "g"] {
            let pid: i32 = std::fs::read_to_string(pids.with_extension(f))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            // Killed; a zombie (reaped later by init) counts as gone. SIGKILL
            // takes effect when the process next runs, which on a loaded
            // machine can be a moment after kill(2) returned (CI saw one
            // still runnable, `R`): wait for it, with a deadline.
            let state = || {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim().to_string()))
            };
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while state().is_some_and(|s| !s.starts_with('Z'))
                && std::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let state = state();
            assert!(
                state.as_deref().is_none_or(|s| s.starts_with('Z')),
                "{f} {pid} still alive: {state:?}"
            );
        }
    }

    #[tokio::test]
    async fn output_beyond_the_cap_is_dropped_but_drained() {
        let data = vec![b'x'; OUTPUT_CAP + 1000];
        let got = read_capped(Some(&data[..])).await.unwrap();
        assert_eq!(got.len(), OUTPUT_CAP);
    }

    mod through_the_rpc {
        use super::*;
        use crate::cri::lifecycle::fake::TestCri;
        use crate::state::ContainerState;

        fn req(id: &str, cmd: &[&str], timeout: i64) -> ExecSyncRequest {
            ExecSyncRequest {
                container_id: id.into(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                timeout,
            }
        }

        #[tokio::test]
        async fn output_and_exit_code_come_back_and_the_process_file_goes() {
            let t = TestCri::new().await;
            let id = t.add_container("web", ContainerState::Running);
            t.runtime.set_script("echo out; echo err >&2; exit 3");
            let r = t.cri.exec_sync(req(&id, &["probe"], 5)).await.unwrap();
            assert_eq!(
                (r.stdout.as_slice(), r.stderr.as_slice(), r.exit_code),
                (&b"out\n"[..], &b"err\n"[..], 3)
            );
            let bundle = t.record(&id).unwrap().bundle;
            let left: Vec<_> = std::fs::read_dir(&bundle)
                .unwrap()
                .flatten()
                .map(|e| e.file_name())
                .filter(|n| n.to_string_lossy().starts_with("exec-"))
                .collect();
            assert!(left.is_empty(), "{left:?}");
        }

        #[tokio::test]
        async fn a_command_past_its_timeout_is_deadline_exceeded_naming_it() {
            let t = TestCri::new().await;
            let id = t.add_container("web", ContainerState::Running);
            t.runtime.set_script("sleep 30");
            let e = t.cri.exec_sync(req(&id, &["slow"], 1)).await.unwrap_err();
            assert_eq!(e.code(), tonic::Code::DeadlineExceeded, "{e}");
            assert!(e.to_string().contains("slow"), "{e}");
        }

        #[tokio::test]
        async fn only_a_running_container_execs_and_bad_requests_name_the_field() {
            let t = TestCri::new().await;
            let created = t.add_container("new", ContainerState::Created);
            let e = t
                .cri
                .exec_sync(req(&created, &["id"], 1))
                .await
                .unwrap_err();
            assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e}");
            let e = t.cri.exec_sync(req(&created, &[], 1)).await.unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
            assert!(e.to_string().contains("cmd"), "{e}");
            let e = t
                .cri
                .exec_sync(req(&created, &["id"], -1))
                .await
                .unwrap_err();
            assert!(e.to_string().contains("timeout"), "{e}");
            let e = t.cri.exec_sync(req("00ff", &["id"], 1)).await.unwrap_err();
            assert_eq!(e.code(), tonic::Code::NotFound, "{e}");
            assert!(!t.runtime.calls().contains(&"exec_command".to_string()));
        }
    }
}

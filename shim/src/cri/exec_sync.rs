//! ExecSync: run a command in a running container and return its output and
//! exit code (kubelet's exec probes and `crictl exec -s`). The command runs in
//! `berth-monitor exec`, which joins the container's namespaces and cgroup with
//! the container's own user, env and cwd. On timeout the helper is killed (its
//! child dies with it) and the call fails with DEADLINE_EXCEEDED, which kubelet
//! reads as a probe timeout.

use std::process::Stdio;
use std::time::Duration;

use berth_proto::v1::{ExecSyncRequest, ExecSyncResponse};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::CriService;
use crate::error::{Error, Result};
use crate::state::new_id;

/// Cap on each of stdout and stderr (what the CRI documents); the rest is drained and dropped.
const OUTPUT_CAP: usize = 16 << 20;

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
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::Runtime(format!("run berth-monitor exec: {e}")))?;
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
    if timeout == 0 {
        return work.await;
    }
    match tokio::time::timeout(Duration::from_secs(timeout as u64), work).await {
        Ok(r) => r,
        // Dropping `work` drops the child, and kill_on_drop kills the helper.
        Err(_) => Err(Error::DeadlineExceeded("exec timed out".into())),
    }
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

    #[tokio::test]
    async fn output_beyond_the_cap_is_dropped_but_drained() {
        let data = vec![b'x'; OUTPUT_CAP + 1000];
        let got = read_capped(Some(&data[..])).await.unwrap();
        assert_eq!(got.len(), OUTPUT_CAP);
    }
}

//! What berthd and containerd have in common as child processes of a test: the
//! log file both streams go to, and the wait until the CRI socket answers.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::registry::tail;

/// The log file a daemon's stdout and stderr both go to: one handle each.
/// `append` keeps what earlier runs (before a restart) wrote.
pub fn log_file(path: &Path, append: bool) -> Result<(File, File)> {
    let log = if append {
        OpenOptions::new().create(true).append(true).open(path)
    } else {
        File::create(path)
    }
    .map_err(Error::io(path))?;
    let log2 = log.try_clone().map_err(Error::io(path))?;
    Ok((log, log2))
}

/// How to tell a freshly spawned daemon is serving.
#[derive(Clone, Copy, Debug)]
pub struct Readiness<'a> {
    /// The daemon's name in errors ("berthd", "containerd").
    pub what: &'a str,
    pub socket: &'a Path,
    pub log_path: &'a Path,
    /// How many of the log's last lines an error carries.
    pub log_lines: usize,
    pub timeout: Duration,
    pub poll: Duration,
}

/// Waits until the CRI socket answers Version. Fails with the log's tail if the
/// child exits first (then `child` is None) or `timeout` passes.
pub async fn wait_until_serving(child: &mut Option<Child>, r: Readiness<'_>) -> Result<()> {
    let log = || {
        tail(
            &std::fs::read_to_string(r.log_path).unwrap_or_default(),
            r.log_lines,
        )
    };
    let deadline = Instant::now() + r.timeout;
    loop {
        if let Some(status) = child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
            *child = None;
            return Err(Error::ExitedEarly {
                what: r.what.into(),
                status,
                log: log(),
            });
        }
        if r.socket.exists() {
            if let Ok(mut cri) = crate::client::connect(r.socket).await {
                let req = berth_proto::v1::VersionRequest {
                    version: "v1".into(),
                };
                if cri.runtime.version(req).await.is_ok() {
                    return Ok(());
                }
            }
        }
        if Instant::now() > deadline {
            return Err(Error::NotReady {
                what: r.what.into(),
                seconds: r.timeout.as_secs(),
                log: log(),
            });
        }
        tokio::time::sleep(r.poll).await;
    }
}

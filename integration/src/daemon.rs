//! A CRI daemon (berthd or containerd) as a child process of a test: spawned
//! with stdout and stderr in one log file, waited on until its CRI socket
//! answers Version, stopped with SIGTERM then SIGKILL, and killed and reaped
//! on drop (printing the log's tail first when the test panics). The two
//! harnesses ([`crate::berthd`], [`crate::containerd`]) add only their
//! command line, their directories and what they clean up after the process.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::registry::tail;

/// How a [`Daemon`] is told apart, found and waited for.
#[derive(Clone, Debug)]
pub struct DaemonSpec {
    /// The daemon's name in errors and logs ("berthd", "containerd").
    pub what: &'static str,
    /// The CRI socket that answers once the daemon serves.
    pub socket: PathBuf,
    /// The file stdout and stderr both go to.
    pub log_path: PathBuf,
    /// Keep what earlier runs (before a restart) wrote in the log.
    pub append_log: bool,
    /// How many of the log's last lines an error, or a panicking test, shows.
    pub log_lines: usize,
    /// How long the daemon may take to answer Version after it is spawned.
    pub ready_timeout: Duration,
    /// How often readiness is checked.
    pub poll: Duration,
}

/// A daemon child process; see the module doc.
#[derive(Debug)]
pub struct Daemon {
    spec: DaemonSpec,
    child: Option<Child>,
}

impl Daemon {
    /// A daemon not yet spawned.
    pub fn new(spec: DaemonSpec) -> Daemon {
        Daemon { spec, child: None }
    }

    /// Spawns `cmd` (stdin from /dev/null, stdout and stderr to the log).
    /// A socket a killed instance left is removed first, so that it cannot
    /// count as "ready".
    pub fn spawn(&mut self, cmd: &mut Command) -> Result<()> {
        let _ = std::fs::remove_file(&self.spec.socket);
        let (log, log2) = log_file(&self.spec.log_path, self.spec.append_log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|source| Error::Spawn {
                program: PathBuf::from(cmd.get_program()),
                source,
            })?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until the CRI socket answers Version. Fails with the log's tail
    /// if the child exits first or the ready timeout passes.
    pub async fn wait_ready(&mut self) -> Result<()> {
        let s = &self.spec;
        let deadline = Instant::now() + s.ready_timeout;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(Error::ExitedEarly {
                    what: s.what.into(),
                    status,
                    log: tail(&self.log(), s.log_lines),
                });
            }
            if s.socket.exists() {
                if let Ok(mut cri) = crate::client::connect(&s.socket).await {
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
                    what: s.what.into(),
                    seconds: s.ready_timeout.as_secs(),
                    log: tail(&self.log(), s.log_lines),
                });
            }
            tokio::time::sleep(s.poll).await;
        }
    }

    /// The CRI socket path.
    pub fn socket(&self) -> &Path {
        &self.spec.socket
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.spec.log_path
    }

    /// Everything the daemon logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.spec.log_path).unwrap_or_default()
    }

    /// The daemon's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still alive.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGTERM, wait up to `timeout`, then SIGKILL; reaps it. Returns the
    /// exit status (None if it was not running). Async so that client
    /// connections on this runtime can answer the daemon while it drains them.
    pub async fn stop(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        let pid = i32::try_from(child.id()).expect("pids fit i32");
        if matches!(child.try_wait(), Ok(None)) {
            kill(Pid::from_raw(pid), Signal::SIGTERM)
                .map_err(|source| Error::Signal { pid, source })?;
            let deadline = Instant::now() + timeout;
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
        }
        self.reap(child).map(Some)
    }

    /// SIGKILL, as a crash would, and reap it.
    pub fn kill(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let _ = child.kill();
        self.reap(child).map(|_| ())
    }

    fn reap(&self, mut child: Child) -> Result<ExitStatus> {
        let pid = child.id();
        child
            .wait()
            .map_err(Error::io(format!("wait for {} pid {pid}", self.spec.what)))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- {} log ({}) ----\n{}",
                self.spec.what,
                self.spec.log_path.display(),
                tail(&self.log(), self.spec.log_lines)
            );
        }
        let _ = self.kill();
    }
}

/// The log file a daemon's stdout and stderr both go to: one handle each.
fn log_file(path: &Path, append: bool) -> Result<(File, File)> {
    let log = if append {
        OpenOptions::new().create(true).append(true).open(path)
    } else {
        File::create(path)
    }
    .map_err(Error::io(path))?;
    let log2 = log.try_clone().map_err(Error::io(path))?;
    Ok((log, log2))
}

//! The real [`ContainerRuntime`]: `berth-monitor` subcommands (found next
//! to berthd unless configured) for whatever needs a fresh process, and the
//! `berth_runtime` library for reading state, signals and cgroups.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use berth_runtime::monitor::command::MonitorCommand;
use berth_runtime::monitor::failure;
use berth_runtime::Container;
use berth_runtime::ErrorKind;
use oci_spec::runtime::LinuxResources;

use super::runtime::{ContainerRuntime, Observed};
use super::runtime_error;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::streaming::monitor_attach::attach_via_monitor;
use crate::streaming::ProcessIo;

/// The runtime berthd uses: `berth-monitor` for anything that needs a new
/// process, the `berth_runtime` library for the rest.
pub(crate) struct MonitorRuntime {
    /// The `berth-monitor` binary.
    monitor: PathBuf,
    /// Compiled seccomp programs shared by creates and execs.
    seccomp_cache: PathBuf,
}

impl MonitorRuntime {
    pub fn new(config: &Config) -> MonitorRuntime {
        MonitorRuntime {
            monitor: monitor_path(config),
            seccomp_cache: config.state_dir.join("seccomp"),
        }
    }

    fn load(state_dir: &Path) -> Result<Container> {
        Container::load(state_dir).map_err(runtime_error)
    }
}

#[async_trait::async_trait]
impl ContainerRuntime for MonitorRuntime {
    async fn run_monitor(&self, cmd: &MonitorCommand) -> Result<String> {
        let sub = cmd.name();
        let out = tokio::process::Command::new(&self.monitor)
            .args(cmd.encode())
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| Error::Runtime(format!("run {} {sub}: {e}", self.monitor.display())))?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).trim().to_string());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let line = stderr.trim().trim_start_matches("berth-monitor: ");
        if line.is_empty() {
            return Err(Error::Runtime(format!(
                "berth-monitor {sub}: exited with {}",
                out.status
            )));
        }
        // The monitor says what class of failure it was (monitor::failure):
        // a bad spec it found is the caller's mistake, not an internal error.
        let (kind, msg) = failure::decode(line);
        Err(match kind {
            ErrorKind::Internal => Error::Runtime(format!("berth-monitor {sub}: {msg}")),
            kind => Error::Status {
                code: crate::error::runtime_code(kind),
                message: format!("berth-monitor {sub}: {msg}"),
            },
        })
    }

    fn exec_command(
        &self,
        state_dir: &Path,
        process_file: &Path,
        tty: bool,
    ) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.monitor);
        c.args(
            MonitorCommand::Exec {
                state_dir: state_dir.to_path_buf(),
                process: process_file.to_path_buf(),
                tty,
                seccomp_cache: Some(self.seccomp_cache.clone()),
            }
            .encode(),
        );
        c
    }

    async fn attach(&self, state_dir: &Path, tty: bool, stdin: bool) -> Result<ProcessIo> {
        attach_via_monitor(&state_dir.join("attach.sock"), tty, stdin).await
    }

    fn observe(&self, state_dir: &Path) -> Observed {
        use berth_runtime::{Error as R, Status};
        let c = match Container::load(state_dir) {
            Ok(c) => c,
            Err(R::NotFound(_)) => {
                return Observed::Lost(
                    "the container's runtime state is gone (node rebooted?)".into(),
                )
            }
            Err(e) => return Observed::Lost(format!("cannot load runtime state: {e}")),
        };
        match c.state() {
            Ok(s) => match s.status {
                Status::Created => Observed::Created,
                Status::Running => Observed::Running {
                    started_at: s.started_at.unwrap_or(0),
                },
                Status::Stopped => match s.exit {
                    Some(x) => Observed::Exited {
                        code: x.code,
                        finished_at: x.finished_at,
                        oom_killed: x.oom_killed,
                    },
                    None => Observed::Lost(
                        "the container's monitor ended without recording the exit".into(),
                    ),
                },
            },
            Err(e) => Observed::Lost(format!("cannot read runtime state: {e}")),
        }
    }

    fn start(&self, state_dir: &Path) -> Result<Option<i64>> {
        let c = Self::load(state_dir)?;
        c.start().map_err(runtime_error)?;
        Ok(c.state().ok().and_then(|s| s.started_at))
    }

    fn kill(&self, state_dir: &Path, signal: i32, all: bool) -> Result<()> {
        Self::load(state_dir)?
            .kill(signal, all)
            .map_err(runtime_error)
    }

    fn exit_fd(&self, state_dir: &Path) -> Option<OwnedFd> {
        Container::load(state_dir).ok().and_then(|c| c.init_pidfd())
    }

    fn update(&self, state_dir: &Path, resources: &LinuxResources) -> Result<()> {
        Self::load(state_dir)?
            .update(resources)
            .map_err(runtime_error)
    }

    fn stats(&self, state_dir: &Path) -> Result<berth_runtime::Stats> {
        Self::load(state_dir)?.stats().map_err(runtime_error)
    }

    fn reopen_log(&self, state_dir: &Path) -> Result<()> {
        let c = Self::load(state_dir)?;
        let f = c.state_file();
        if !berth_runtime::container::state::is_alive(f.monitor_pid, f.monitor_start_time) {
            return Err(Error::FailedPrecondition(format!(
                "container {}: its monitor is gone",
                c.id()
            )));
        }
        // The monitor reopens its log on SIGUSR1.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(f.monitor_pid),
            nix::sys::signal::Signal::SIGUSR1,
        )
        .map_err(|e| Error::Runtime(format!("signal monitor {}: {e}", f.monitor_pid)))
    }

    fn delete(&self, state_dir: &Path) -> Result<()> {
        berth_runtime::delete_dir(state_dir, true).map_err(runtime_error)
    }
}

/// Finds `berth-monitor`: the configured path, else next to berthd, else $PATH.
pub(crate) fn monitor_path(config: &Config) -> PathBuf {
    if !config.monitor_path.is_empty() {
        return PathBuf::from(&config.monitor_path);
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
    {
        let candidate = dir.join("berth-monitor");
        if candidate.is_file() {
            return candidate;
        }
    }
    PathBuf::from("berth-monitor")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_monitor_path_wins() {
        let cfg = Config {
            monitor_path: "/opt/x/berth-monitor".into(),
            ..Config::default()
        };
        assert_eq!(monitor_path(&cfg), PathBuf::from("/opt/x/berth-monitor"));
    }

    /// A stand-in monitor that fails the way the real one does.
    fn failing_monitor(dir: &Path, stderr: &str) -> MonitorRuntime {
        use std::os::unix::fs::PermissionsExt;
        let bin = dir.join("berth-monitor");
        std::fs::write(&bin, format!("#!/bin/sh\necho '{stderr}' >&2\nexit 1\n")).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        MonitorRuntime::new(&Config {
            monitor_path: bin.display().to_string(),
            state_dir: dir.to_path_buf(),
            ..Config::default()
        })
    }

    #[tokio::test]
    async fn a_monitor_failure_keeps_its_class_across_the_process_boundary() {
        let d = tempfile::tempdir().unwrap();
        let cmd = MonitorCommand::Delete {
            state_dir: d.path().join("c"),
            force: true,
        };
        let cases = [
            (
                "berth-monitor: [invalid-argument] linux.devices[0].major: -5 is negative",
                tonic::Code::InvalidArgument,
            ),
            (
                "berth-monitor: [not-found] container state /x not found",
                tonic::Code::NotFound,
            ),
            (
                "[unimplemented] hugetlb: no controller",
                tonic::Code::Unimplemented,
            ),
            (
                "berth-monitor: [internal] mount: EPERM",
                tonic::Code::Internal,
            ),
            ("thread main panicked", tonic::Code::Internal),
        ];
        for (line, code) in cases {
            let e = failing_monitor(d.path(), line)
                .run_monitor(&cmd)
                .await
                .unwrap_err();
            assert_eq!(e.code(), code, "{line}: {e}");
            let msg = e.to_string();
            assert!(msg.contains("berth-monitor delete: "), "{msg}");
            for kind in ErrorKind::ALL {
                let tag = format!("[{}]", kind.name());
                assert!(!msg.contains(&tag), "the class tag is not shown: {msg}");
            }
        }
    }
}

//! How berthd runs `berth-monitor`: finding the binary, one-shot subcommands
//! whose stdout is the answer, and the exec helper streaming RPCs attach to.

use std::path::{Path, PathBuf};

use berth_runtime::monitor::command::MonitorCommand;

use super::Lifecycle;
use crate::config::Config;
use crate::error::{Error, Result};

impl Lifecycle {
    /// `berth-monitor exec` of the process in `process_file` in the container
    /// whose monitor state is in `state_dir`.
    pub fn exec_helper(
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
                seccomp_cache: Some(self.seccomp_cache_dir()),
            }
            .encode(),
        );
        c
    }

    /// Runs `berth-monitor <cmd>` and returns its stdout; a failure carries the
    /// one-line reason the monitor printed.
    pub async fn run_monitor(&self, cmd: &MonitorCommand) -> Result<String> {
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
        let msg = stderr.trim().trim_start_matches("berth-monitor: ");
        Err(Error::Runtime(format!(
            "berth-monitor {sub}: {}",
            if msg.is_empty() {
                format!("exited with {}", out.status)
            } else {
                msg.to_string()
            }
        )))
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
}

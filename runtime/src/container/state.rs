//! What is persisted about a container, and how its status is derived.
//!
//! ```text
//!   create ──> Created ──start()──> Running ──(init exits)──> Stopped ──delete()──> (gone)
//!                 └───────────kill()/delete(force)──────────────┘
//! ```
//! The status is never stored: it is derived on every read from `state.json`
//! (written once at create), the `started` marker (written by start), whether the
//! init pid still lives (checked against its recorded start time, so a reused pid
//! is not mistaken for it), and `exit.json` (written by the monitor). That makes a
//! dead monitor or a restarted berthd harmless: the files and /proc tell the truth.

use crate::cgroups::Layout;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Version of `state.json`; loading refuses other versions.
pub const STATE_VERSION: u32 = 1;
/// File names inside a container's state dir.
pub const STATE_FILE: &str = "state.json";
pub const EXIT_FILE: &str = "exit.json";
pub const STARTED_FILE: &str = "started";
pub const FIFO_FILE: &str = "exec.fifo";
pub const ATTACH_SOCKET: &str = "attach.sock";

/// The persisted facts of a created container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateFile {
    pub version: u32,
    pub id: String,
    pub pid: i32,
    /// Start time of `pid` in clock ticks since boot (field 22 of /proc/PID/stat).
    pub pid_start_time: u64,
    pub monitor_pid: i32,
    pub monitor_start_time: u64,
    pub created_at: i64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub cgroup_layout: Layout,
    pub cgroup_root: PathBuf,
    pub cgroup_path: PathBuf,
    pub terminal: bool,
}

/// Lifecycle status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Created,
    Running,
    Stopped,
}

impl Status {
    /// Whether `start()` is allowed.
    pub fn can_start(self) -> bool {
        self == Status::Created
    }
    /// Whether `delete(false)` is allowed.
    pub fn can_delete(self) -> bool {
        self != Status::Running
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Stopped => "stopped",
        })
    }
}

/// How the container's init ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// Exit status, or 128+signal when killed by a signal.
    pub code: i32,
    pub signal: Option<i32>,
    /// Unix nanoseconds.
    pub finished_at: i64,
    pub oom_killed: bool,
}

/// A snapshot of a container's state. `exit` is `None` for a Stopped container
/// whose monitor died before recording the exit (the exit is unknown).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerState {
    pub id: String,
    pub pid: i32,
    pub status: Status,
    /// Unix nanoseconds.
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub exit: Option<ExitInfo>,
}

/// Writes `data` to `path` atomically: temp file, fsync, rename, fsync dir.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(data).map_err(|e| Error::io(&tmp, e))?;
    f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reads a JSON file; `Ok(None)` when it does not exist.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| Error::CorruptState {
                path: path.into(),
                msg: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Start time of a process (clock ticks since boot), `None` if it does not exist
/// or is a zombie (it has exited; only the reaping is pending).
pub fn pid_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    if fields.first() == Some(&"Z") || fields.first() == Some(&"X") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Whether `pid` is alive and is the process that had `start_time`.
pub fn is_alive(pid: i32, start_time: u64) -> bool {
    pid > 0 && pid_start_time(pid) == Some(start_time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_is_readable_and_stable() {
        let me = i32::try_from(std::process::id()).unwrap();
        let t = pid_start_time(me).unwrap();
        assert!(is_alive(me, t));
        assert!(!is_alive(me, t + 1));
        assert!(!is_alive(i32::MAX, t));
    }

    #[test]
    fn atomic_write_replaces_content() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.json");
        write_atomic(&p, b"{\"a\":1}").unwrap();
        write_atomic(&p, b"{\"a\":2}").unwrap();
        let v: serde_json::Value = read_json(&p).unwrap().unwrap();
        assert_eq!(v["a"], 2);
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }
}

//! The library face of a container, safe to use from a multi-threaded (tokio)
//! process: it never forks; it only reads files, writes cgroupfs and sends
//! signals through pidfds.

pub mod create;
pub mod exec;
pub mod exec_tty;
pub mod init;
pub mod state;
pub mod userns;

pub use state::{ContainerState, ExitInfo, Status};

use crate::cgroups::{self, CgroupManager, Stats};
use crate::error::{Error, Result};
use crate::sys::process;
use oci_spec::runtime::LinuxResources;
use state::{StateFile, EXIT_FILE, FIFO_FILE, STARTED_FILE, STATE_FILE, STATE_VERSION};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long `delete` waits for the monitor to record an exit after SIGKILL.
const DELETE_WAIT: Duration = Duration::from_secs(10);

/// A container created by `berth-monitor create`, loaded from its state dir.
#[derive(Debug, Clone)]
pub struct Container {
    dir: PathBuf,
    file: StateFile,
}

impl Container {
    /// Loads a container from the state dir given to `berth-monitor create`.
    pub fn load(state_dir: &Path) -> Result<Container> {
        let path = state_dir.join(STATE_FILE);
        let file: StateFile =
            state::read_json(&path)?.ok_or_else(|| Error::NotFound(state_dir.into()))?;
        if file.version != STATE_VERSION {
            return Err(Error::CorruptState {
                path,
                msg: format!("version {} (expected {STATE_VERSION})", file.version),
            });
        }
        Ok(Container {
            dir: state_dir.into(),
            file,
        })
    }

    /// The container id.
    pub fn id(&self) -> &str {
        &self.file.id
    }

    /// The init's host pid.
    pub fn pid(&self) -> i32 {
        self.file.pid
    }

    /// The state dir.
    pub fn state_dir(&self) -> &Path {
        &self.dir
    }

    /// The persisted create-time facts.
    pub fn state_file(&self) -> &StateFile {
        &self.file
    }

    fn cgroup(&self) -> Box<dyn CgroupManager> {
        cgroups::manager(
            self.file.cgroup_layout,
            &self.file.cgroup_root,
            &self.file.cgroup_path,
        )
    }

    fn init_alive(&self) -> bool {
        state::is_alive(self.file.pid, self.file.pid_start_time)
    }

    fn monitor_alive(&self) -> bool {
        state::is_alive(self.file.monitor_pid, self.file.monitor_start_time)
    }

    fn read_exit(&self) -> Result<Option<ExitInfo>> {
        state::read_json(&self.dir.join(EXIT_FILE))
    }

    fn started_at(&self) -> Option<i64> {
        std::fs::read_to_string(self.dir.join(STARTED_FILE))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// The current state, derived from the files and /proc (see [`state`]).
    pub fn state(&self) -> Result<ContainerState> {
        let exit = self.read_exit()?;
        let started_at = self.started_at();
        let status = if exit.is_some() {
            Status::Stopped
        } else if self.init_alive() {
            if started_at.is_some() {
                Status::Running
            } else {
                Status::Created
            }
        } else if self.monitor_alive() {
            // The init is gone and its monitor is about to record the exit.
            match self.wait_exit(Duration::from_secs(2))? {
                Some(_) => Status::Stopped,
                None if started_at.is_some() => Status::Running,
                None => Status::Created,
            }
        } else {
            Status::Stopped
        };
        Ok(ContainerState {
            id: self.file.id.clone(),
            pid: self.file.pid,
            status,
            created_at: self.file.created_at,
            started_at,
            exit: if status == Status::Stopped {
                self.read_exit()?
            } else {
                None
            },
        })
    }

    fn wait_exit(&self, limit: Duration) -> Result<Option<ExitInfo>> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(e) = self.read_exit()? {
                return Ok(Some(e));
            }
            if !self.monitor_alive() || Instant::now() >= deadline {
                return self.read_exit();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Lets the created init exec the process (writes a byte to the exec fifo).
    pub fn start(&self) -> Result<()> {
        let st = self.state()?;
        if !st.status.can_start() {
            return Err(Error::BadState {
                id: self.file.id.clone(),
                op: "start",
                status: st.status.to_string(),
            });
        }
        let fifo = self.dir.join(FIFO_FILE);
        // Non-blocking: with no reader (init gone) this fails with ENXIO at once
        // instead of hanging the caller.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&fifo)
            .map_err(|e| Error::io(&fifo, e))?;
        state::write_atomic(
            &self.dir.join(STARTED_FILE),
            crate::timefmt::now_nanos().to_string().as_bytes(),
        )?;
        f.write_all(b"1").map_err(|e| Error::io(&fifo, e))?;
        let _ = std::fs::remove_file(&fifo);
        Ok(())
    }

    /// Sends `signal` to the init, or with `all` to every process in the cgroup.
    pub fn kill(&self, signal: i32, all: bool) -> Result<()> {
        if !(0..=64).contains(&signal) {
            return Err(Error::InvalidArgument {
                name: "signal".into(),
                msg: format!("{signal} is not a signal number"),
            });
        }
        if all {
            return self.cgroup().kill_all(signal);
        }
        // A pidfd pins the process: after checking its start time, the signal
        // cannot reach a different process that reused the pid.
        let pidfd = process::pidfd_open(self.file.pid).ok();
        if pidfd.is_none() || !self.init_alive() {
            return Err(Error::BadState {
                id: self.file.id.clone(),
                op: "kill",
                status: Status::Stopped.to_string(),
            });
        }
        if let Some(fd) = pidfd {
            process::pidfd_send_signal(&fd, signal).map_err(|e| {
                Error::sys(format!("kill {} with signal {signal}", self.file.pid), e)
            })?;
        }
        Ok(())
    }

    /// A pidfd of the init, which polls readable once the init has exited;
    /// `None` when it is already gone. Lets a caller wait for the exit
    /// without polling the state.
    pub fn init_pidfd(&self) -> Option<std::os::fd::OwnedFd> {
        let fd = process::pidfd_open(self.file.pid).ok()?;
        // Opened first, checked second: the fd cannot name a reused pid.
        self.init_alive().then_some(fd)
    }

    /// Removes the container: kills it when `force` (or when it was never
    /// started), waits for the monitor to record the exit, removes the cgroup
    /// and the state dir. Deleting twice is fine.
    pub fn delete(&self, force: bool) -> Result<()> {
        let st = self.state()?;
        if st.status == Status::Running && !force {
            return Err(Error::BadState {
                id: self.file.id.clone(),
                op: "delete",
                status: st.status.to_string(),
            });
        }
        if st.status != Status::Stopped {
            let _ = self.kill(libc::SIGKILL, false);
        }
        let cg = self.cgroup();
        let deadline = Instant::now() + DELETE_WAIT;
        loop {
            let pids = cg.pids().unwrap_or_default();
            if !pids.is_empty() {
                let _ = cg.kill_all(libc::SIGKILL);
            }
            let init_done = !self.init_alive();
            let monitor_done = !self.monitor_alive() || self.dir.join(EXIT_FILE).exists();
            if pids.is_empty() && init_done && monitor_done {
                break;
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout(format!(
                    "container {} to exit after SIGKILL",
                    self.file.id
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        // The monitor exits right after writing exit.json; give it a moment so the
        // state dir is not removed under its feet.
        let until = Instant::now() + Duration::from_secs(2);
        while self.monitor_alive() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        cg.remove()?;
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&self.dir, e)),
        }
    }

    /// Resource usage from the cgroup.
    pub fn stats(&self) -> Result<Stats> {
        self.cgroup().stats()
    }

    /// Changes resource limits of a created or running container.
    pub fn update(&self, resources: &LinuxResources) -> Result<()> {
        self.cgroup().apply(resources)
    }
}

/// Deletes a container by state dir; a missing dir counts as deleted.
pub fn delete_dir(state_dir: &Path, force: bool) -> Result<()> {
    match Container::load(state_dir) {
        Ok(c) => c.delete(force),
        Err(Error::NotFound(_)) => match std::fs::remove_dir_all(state_dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(state_dir, e)),
        },
        Err(e) => Err(e),
    }
}

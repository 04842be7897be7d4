//! The seam between the CRI layer and the container runtime: every RPC body
//! reaches containers through [`ContainerRuntime`], never through
//! `berth_runtime::Container` or the `berth-monitor` binary directly. The
//! daemon's only implementation is [`super::monitor::MonitorRuntime`]; unit
//! tests put `fake::FakeRuntime` in its place to drive each RPC's logic
//! (states, error paths, rollback) without a kernel.
//!
//! Containers are named by their monitor state dir (`<state_dir>/c/<id>`),
//! which is what the runtime keys its state by. The synchronous methods block
//! (file reads, signals, cgroup writes): callers run them through
//! [`super::blocking`].

use std::os::fd::OwnedFd;
use std::path::Path;

use berth_runtime::monitor::command::MonitorCommand;
use oci_spec::runtime::LinuxResources;

use crate::error::Result;
use crate::streaming::ProcessIo;

/// What the runtime says about a container right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Observed {
    Created,
    Running {
        started_at: i64,
    },
    Exited {
        code: i32,
        finished_at: i64,
        oom_killed: bool,
    },
    /// Stopped with no exit recorded (its monitor died), or the state is gone.
    Lost(String),
}

/// Everything the pod and container RPCs ask of the runtime.
#[async_trait::async_trait]
pub(crate) trait ContainerRuntime: Send + Sync + 'static {
    /// Runs a one-shot monitor subcommand (`create`, `pin-ns`); its stdout is
    /// the answer. A failure carries the monitor's one-line reason.
    async fn run_monitor(&self, cmd: &MonitorCommand) -> Result<String>;

    /// The command that runs the process described in `process_file` inside
    /// the container; the caller spawns it with the pipes or pty it needs.
    fn exec_command(
        &self,
        state_dir: &Path,
        process_file: &Path,
        tty: bool,
    ) -> tokio::process::Command;

    /// Attaches to the container's stdio (its output from now on, and stdin
    /// when asked). Dropping the result detaches.
    async fn attach(&self, state_dir: &Path, tty: bool, stdin: bool) -> Result<ProcessIo>;

    /// The container's state (blocking).
    fn observe(&self, state_dir: &Path) -> Observed;

    /// Lets the created init exec the container's process; returns when it
    /// started (unix nanos), when the runtime knows (blocking).
    fn start(&self, state_dir: &Path) -> Result<Option<i64>>;

    /// Sends `signal` to the init, or with `all` to every process of the
    /// container's cgroup (blocking).
    fn kill(&self, state_dir: &Path, signal: i32, all: bool) -> Result<()>;

    /// A pidfd of the init that turns readable when it exits, if the runtime
    /// can give one (blocking).
    fn exit_fd(&self, state_dir: &Path) -> Option<OwnedFd>;

    /// Applies new resource limits to a created or running container (blocking).
    fn update(&self, state_dir: &Path, resources: &LinuxResources) -> Result<()>;

    /// Current cgroup usage (blocking).
    fn stats(&self, state_dir: &Path) -> Result<berth_runtime::Stats>;

    /// Makes the container's monitor reopen its log file (blocking).
    fn reopen_log(&self, state_dir: &Path) -> Result<()>;

    /// Deletes the runtime state of a stopped (or never started) container;
    /// a missing state dir is fine (blocking).
    fn delete(&self, state_dir: &Path) -> Result<()>;
}

//! berth-runtime: everything that touches the kernel to run one container from
//! an OCI runtime spec, and the per-container `berth-monitor` binary.
//!
//! Library entry points are safe to call from a multi-threaded process (they
//! never fork): [`Container`] (load/state/start/kill/delete/stats/update) and
//! [`unpin_namespaces`]. Creating containers, exec and pinning namespaces need a
//! fresh single-threaded process and are done by `berth-monitor` subcommands.

extern crate alloc;

pub mod bench;
pub mod cgroups;
pub mod container;
pub mod error;
pub mod idmap;
pub mod monitor;
pub mod pin;
pub mod rootfs;
pub mod seccomp_cache;
pub mod security;
pub mod spec;
pub mod sys;
pub mod timefmt;

pub use cgroups::Stats;
pub use container::{delete_dir, Container, ContainerState, ExitInfo, Status};
pub use error::{Error, ErrorKind, Result};
pub use pin::{pin_namespaces_in_thread, unpin_namespaces};

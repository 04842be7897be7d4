//! berth-integration: the harness every end-to-end test and benchmark uses.
//!
//! - [`registry::Registry`]: a real local OCI registry (Debian's `docker-registry`),
//!   optionally with TLS and basic auth.
//! - [`image_builder`] and [`test_images`]: reproducible OCI test images built from
//!   busybox-static with our own code.
//! - [`push::RegistryClient`]: pushes images over the distribution API, fetches
//!   manifests back.
//! - [`berthd::Berthd`]: the real daemon as a child process in a private tempdir;
//!   [`containerd::Containerd`]: the peer; [`daemon::Daemon`]: the child process
//!   under both.
//! - [`client::Cri`]: typed CRI clients over a unix socket; [`calls`]: the CRI
//!   calls tests repeat, one function each.
//! - [`bridge::TestBridge`]: a private CNI bridge network with its iptables guard;
//!   [`cni::TestPlugins`]: a test's own CNI plugins (scripts) and their conflist.
//! - [`env::TestEnv`]: all of it in one call (registry with the test images,
//!   berthd, the pods' network, containerd beside it on request).
//! - [`crash`]: pod lifecycles with berthd SIGKILLed at random points (test and bench).
//! - [`wait`]: polling for a condition with a deadline, in place of sleeps.
//! - [`kubectl`]: Debian's kubectl against berthd's streaming server, through a
//!   fake API server that proxies the upgrades as the API server and kubelet do.

pub mod error;
pub mod image_builder;
pub mod test_images;

pub use error::{Error, Result};
pub mod bench;
pub mod bench_stream;
pub mod berth_cli;
pub mod berthd;
pub mod bridge;
pub mod calls;
pub mod cleanup;
pub mod client;
pub mod cni;
pub mod command;
pub mod containerd;
pub mod crash;
pub mod daemon;
pub mod env;
pub mod kubectl;
pub mod procmem;
pub mod push;
pub mod registry;
pub mod replay;
pub mod shared_dir;
pub mod skip;
pub mod wait;

//! berth-shim: the CRI daemon `berthd` and the operator CLI `berth`.
//!
//! `cri` holds the gRPC services (one file per RPC group), `store` the metadata
//! database, `image` the image store, `config` the daemon's configuration;
//! see DESIGN.md for the map.
#![forbid(unsafe_code)]

pub mod cgroup_host;
pub mod cli;
pub mod client;
pub mod config;
pub mod cri;
pub mod error;
pub mod grpc_authority;
pub mod image;
pub mod metrics;
pub mod network;
pub mod server;
pub mod spec;
pub mod state;
pub mod store;
pub mod streaming;
pub(crate) mod tasks;

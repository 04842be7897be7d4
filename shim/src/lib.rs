//! berth-shim: the CRI daemon `berthd` and the operator CLI `berth`.
//!
//! `cri` holds the gRPC services (one file per RPC group), `store` the metadata
//! database, `config` the daemon's configuration; see DESIGN.md for the map.
#![forbid(unsafe_code)]

pub mod error;
pub mod store;

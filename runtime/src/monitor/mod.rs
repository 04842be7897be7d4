//! The per-container monitor: after create it owns the container's stdio, writes
//! the CRI log, serves attach, reaps the init and records its exit.

pub mod attach;
pub mod log;
pub mod serve;

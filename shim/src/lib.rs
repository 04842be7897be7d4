//! berth-shim. (being written)
#![forbid(unsafe_code)]

//! berth-integration harness. (being written)

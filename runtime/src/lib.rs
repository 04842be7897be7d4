//! berth-runtime. (being written)

//! The CRI v1 protocol. (being written)

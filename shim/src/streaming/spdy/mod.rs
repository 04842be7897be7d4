//! SPDY/3.1 as Kubernetes uses it: a multiplexing layer with client-created
//! streams, zlib-compressed header blocks and per-stream half-close. [`session`] is
//! the server side; the frame codec is shared with the client in
//! [`crate::streaming::client`].

pub mod dictionary;
pub mod frame;
pub mod headers;
pub mod session;

pub use frame::{Frame, FrameCodec};
pub use session::{IncomingStream, Session, SpdyWriter};

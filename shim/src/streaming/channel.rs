//! The transport-neutral shape of a multiplexed stream, so the exec/attach and
//! port-forward logic is written once for SPDY and WebSocket: bytes from the
//! client arrive on an [`Inbound`] (ending when the client half-closes), bytes
//! to the client go through a [`ChannelWriter`].

use std::io;

use bytes::Bytes;
use tokio::sync::mpsc;

/// Capacity of each inbound queue: the connection reader blocks when a
/// consumer falls behind, which pushes back on the client over TCP.
pub(crate) const INBOUND_QUEUE: usize = 16;

/// Data the client sent on one stream or channel.
pub struct Inbound {
    rx: mpsc::Receiver<Bytes>,
    on_consume: Option<Box<dyn Fn(usize) + Send + Sync>>,
}

// By hand: it holds handles (tasks, streams, callbacks, stores) with no useful
// Debug of their own.
impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound").finish_non_exhaustive()
    }
}

impl Inbound {
    /// A queue and the sender the connection reader feeds.
    pub(crate) fn channel() -> (mpsc::Sender<Bytes>, Inbound) {
        let (tx, rx) = mpsc::channel(INBOUND_QUEUE);
        (
            tx,
            Inbound {
                rx,
                on_consume: None,
            },
        )
    }

    /// Calls `f` with the size of each chunk taken (SPDY window updates).
    pub(crate) fn with_consume_hook(mut self, f: Box<dyn Fn(usize) + Send + Sync>) -> Self {
        self.on_consume = Some(f);
        self
    }

    /// The next chunk; `None` once the client closed its side.
    pub async fn recv(&mut self) -> Option<Bytes> {
        let b = self.rx.recv().await?;
        if let Some(f) = &self.on_consume {
            f(b.len());
        }
        Some(b)
    }
}

/// Sends bytes to the client on one stream or channel.
#[async_trait::async_trait]
pub trait ChannelWriter: Send {
    /// Sends `data` (an empty write is a valid, visible frame on WebSocket).
    async fn write(&mut self, data: Bytes) -> io::Result<()>;
    /// Half-closes the channel where the transport can express it.
    async fn close(&mut self) -> io::Result<()>;
}

/// Boxed writer.
pub type BoxChannelWriter = Box<dyn ChannelWriter>;

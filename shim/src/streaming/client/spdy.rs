//! The client side of one SPDY/3.1 connection: this side opens the streams
//! (odd ids, each SYN_STREAM carrying the caller's headers), the server
//! replies, data flows both ways, and either side half-closes with FIN.
//!
//! One writer task owns the socket's write half and the compressing codec,
//! so frames leave in the order they were queued (a SYN_STREAM always before
//! its stream's data). One reader task decodes frames and routes DATA to the
//! per-stream queue; it answers the server's PINGs and ends every queue when
//! the connection ends. A stream the server resets ends its queue and makes
//! its writer fail.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::streaming::channel::ChannelWriter;
use crate::streaming::spdy::frame::{goaway, rst, FLAG_FIN};
use crate::streaming::spdy::headers::HeaderList;
use crate::streaming::spdy::session::broken;
use crate::streaming::spdy::{Frame, FrameCodec};

/// Largest DATA payload sent in one frame.
const MAX_CHUNK: usize = 32 * 1024;
/// Frames queued for the writer before senders wait.
const OUT_QUEUE: usize = 64;
/// Chunks queued per inbound stream before the reader waits (back-pressure).
const IN_QUEUE: usize = 64;

struct Entry {
    inbound: Option<mpsc::Sender<Bytes>>,
    reset: bool,
}

struct Shared {
    streams: Mutex<HashMap<u32, Entry>>,
    next_id: Mutex<u32>,
    out: mpsc::Sender<Frame>,
    cancel: CancellationToken,
}

impl Shared {
    fn streams(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Entry>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A client SPDY connection. Dropping the last clone ends both tasks and
/// so closes the socket: a caller that gives up (a dropped future) must
/// look like a client that went away, which is what ends a remote process.
#[derive(Clone)]
pub(crate) struct Connection {
    shared: Arc<Shared>,
    _end_on_drop: Arc<DropGuard>,
}

/// A stream this side opened: what the server sends on it, and a writer.
pub(crate) struct Stream {
    pub inbound: mpsc::Receiver<Bytes>,
    pub writer: StreamWriter,
}

/// Sends DATA on one stream.
pub(crate) struct StreamWriter {
    id: u32,
    shared: Arc<Shared>,
    closed: bool,
}

#[async_trait::async_trait]
impl ChannelWriter for StreamWriter {
    async fn write(&mut self, mut data: Bytes) -> io::Result<()> {
        if self.closed {
            return Err(broken(self.id));
        }
        while !data.is_empty() {
            if self.shared.streams().get(&self.id).is_none_or(|e| e.reset) {
                return Err(broken(self.id));
            }
            let chunk = data.split_to(data.len().min(MAX_CHUNK));
            self.shared
                .out
                .send(Frame::Data {
                    stream_id: self.id,
                    flags: 0,
                    data: chunk,
                })
                .await
                .map_err(|_| broken(self.id))?;
        }
        Ok(())
    }

    async fn close(&mut self) -> io::Result<()> {
        if std::mem::replace(&mut self.closed, true) {
            return Ok(());
        }
        self.shared
            .out
            .send(Frame::Data {
                stream_id: self.id,
                flags: FLAG_FIN,
                data: Bytes::new(),
            })
            .await
            .map_err(|_| broken(self.id))
    }
}

impl Connection {
    /// Starts the reader and writer on `io`; `leftover` holds bytes already
    /// read past the HTTP upgrade response.
    pub(crate) fn start<IO>(io: IO, leftover: BytesMut) -> Connection
    where
        IO: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (out_tx, out_rx) = mpsc::channel(OUT_QUEUE);
        let shared = Arc::new(Shared {
            streams: Mutex::new(HashMap::new()),
            next_id: Mutex::new(1),
            out: out_tx,
            cancel: CancellationToken::new(),
        });
        let (rd, wr) = tokio::io::split(io);
        tokio::spawn(write_loop(wr, out_rx, shared.cancel.clone()));
        tokio::spawn(read_loop(rd, leftover, shared.clone()));
        let guard = Arc::new(shared.cancel.clone().drop_guard());
        Connection {
            shared,
            _end_on_drop: guard,
        }
    }

    /// Opens a stream with `headers`; the server's data arrives on its inbound queue.
    pub(crate) async fn open(&self, headers: HeaderList) -> io::Result<Stream> {
        let (tx, rx) = mpsc::channel(IN_QUEUE);
        let id = {
            let mut next = self
                .shared
                .next_id
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let id = *next;
            *next += 2;
            id
        };
        self.shared.streams().insert(
            id,
            Entry {
                inbound: Some(tx),
                reset: false,
            },
        );
        self.shared
            .out
            .send(Frame::SynStream {
                stream_id: id,
                associated_to: 0,
                priority: 0,
                slot: 0,
                flags: 0,
                headers,
            })
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "spdy connection is closed"))?;
        Ok(Stream {
            inbound: rx,
            writer: StreamWriter {
                id,
                shared: self.shared.clone(),
                closed: false,
            },
        })
    }

    /// Says goodbye (GOAWAY) and stops both tasks once it is out.
    pub(crate) async fn close(&self) {
        let _ = self
            .shared
            .out
            .send(Frame::GoAway {
                last_good_stream_id: 0,
                status: goaway::OK,
            })
            .await;
        // The writer drains the queue in order; a short grace period is
        // enough for the GOAWAY, and a dead peer must not hold us.
        let _ = tokio::time::timeout(
            std::time::Duration::from_millis(200),
            self.shared.cancel.cancelled(),
        )
        .await;
        self.shared.cancel.cancel();
    }
}

async fn write_loop<W: AsyncWrite>(
    wr: W,
    mut out: mpsc::Receiver<Frame>,
    cancel: CancellationToken,
) {
    tokio::pin!(wr);
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::new();
    loop {
        let f = tokio::select! {
            f = out.recv() => f,
            _ = cancel.cancelled() => None,
        };
        let Some(mut f) = f else { break };
        buf.clear();
        // Encode what is already queued into one write: stdin and resize
        // traffic is many small frames.
        let mut goaway = false;
        loop {
            goaway |= matches!(f, Frame::GoAway { .. });
            if let Err(e) = codec.encode(&f, &mut buf) {
                tracing::debug!(error = %e, "spdy client: cannot encode frame");
                cancel.cancel();
                return;
            }
            if goaway || buf.len() >= MAX_CHUNK * 4 {
                break;
            }
            match out.try_recv() {
                Ok(next) => f = next,
                Err(_) => break,
            }
        }
        if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
            break;
        }
        if goaway {
            let _ = wr.shutdown().await;
            break;
        }
    }
    cancel.cancel();
}

async fn read_loop<R: AsyncRead>(rd: R, mut buf: BytesMut, shared: Arc<Shared>) {
    tokio::pin!(rd);
    let mut codec = FrameCodec::new();
    'conn: loop {
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => handle(&shared, frame).await,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "spdy client: bad frame from server");
                    break 'conn;
                }
            }
        }
        let n = tokio::select! {
            r = rd.read_buf(&mut buf) => r,
            _ = shared.cancel.cancelled() => break,
        };
        if !matches!(n, Ok(n) if n > 0) {
            break;
        }
    }
    // The server is gone: every inbound queue ends, every writer fails.
    for e in shared.streams().values_mut() {
        e.inbound = None;
        e.reset = true;
    }
    shared.cancel.cancel();
}

async fn handle(shared: &Arc<Shared>, frame: Frame) {
    match frame {
        Frame::Data {
            stream_id,
            flags,
            data,
        } => {
            let tx = {
                let mut streams = shared.streams();
                let Some(e) = streams.get_mut(&stream_id) else {
                    return;
                };
                let tx = e.inbound.clone();
                if flags & FLAG_FIN != 0 {
                    e.inbound = None;
                }
                tx
            };
            if let (Some(tx), false) = (tx, data.is_empty()) {
                // A consumer that dropped its queue just loses the data.
                tokio::select! {
                    _ = tx.send(data) => {}
                    _ = shared.cancel.cancelled() => {}
                }
            }
        }
        Frame::SynReply {
            stream_id, flags, ..
        }
        | Frame::Headers {
            stream_id, flags, ..
        } => {
            if flags & FLAG_FIN != 0 {
                if let Some(e) = shared.streams().get_mut(&stream_id) {
                    e.inbound = None;
                }
            }
        }
        Frame::RstStream { stream_id, status } => {
            tracing::debug!(stream_id, status, "spdy client: server reset stream");
            if let Some(e) = shared.streams().get_mut(&stream_id) {
                e.inbound = None;
                e.reset = true;
            }
        }
        Frame::SynStream { stream_id, .. } => {
            // Servers do not push in these protocols.
            let _ = shared
                .out
                .send(Frame::RstStream {
                    stream_id,
                    status: rst::REFUSED_STREAM,
                })
                .await;
        }
        Frame::Ping { id } => {
            // This side never pings, so every ping is the server's: echo it.
            let _ = shared.out.send(Frame::Ping { id }).await;
        }
        Frame::GoAway { .. }
        | Frame::Settings { .. }
        | Frame::WindowUpdate { .. }
        | Frame::Unknown { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streaming::spdy::headers;

    /// A fake server on the other end of a duplex pipe: the client's frames
    /// come out in order with odd ids, FIN closes a stream, and the server's
    /// data, FIN, RST and PING are routed as a real server would send them.
    #[tokio::test]
    async fn client_opens_odd_streams_and_routes_server_frames() {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let conn = Connection::start(client_io, BytesMut::new());
        let (mut srd, mut swr) = tokio::io::split(server_io);
        let mut a = conn
            .open(vec![("streamType".into(), "error".into())])
            .await
            .unwrap();
        let mut b = conn
            .open(vec![("streamType".into(), "stdin".into())])
            .await
            .unwrap();
        b.writer.write(Bytes::from_static(b"hi")).await.unwrap();
        b.writer.close().await.unwrap();

        let mut codec = FrameCodec::new();
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        while frames.len() < 4 {
            srd.read_buf(&mut buf).await.unwrap();
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                frames.push(f);
            }
        }
        match &frames[0] {
            Frame::SynStream {
                stream_id: 1,
                headers: h,
                ..
            } => assert_eq!(headers::get(h, "streamtype"), Some("error")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(&frames[1], Frame::SynStream { stream_id: 3, .. }));
        assert_eq!(
            frames[2],
            Frame::Data {
                stream_id: 3,
                flags: 0,
                data: Bytes::from_static(b"hi")
            }
        );
        assert_eq!(
            frames[3],
            Frame::Data {
                stream_id: 3,
                flags: FLAG_FIN,
                data: Bytes::new()
            }
        );

        let mut enc = FrameCodec::new();
        let mut out = BytesMut::new();
        for f in [
            Frame::SynReply {
                stream_id: 1,
                flags: 0,
                headers: vec![],
            },
            Frame::Ping { id: 2 },
            Frame::Data {
                stream_id: 1,
                flags: FLAG_FIN,
                data: Bytes::from_static(b"status"),
            },
            Frame::RstStream {
                stream_id: 3,
                status: rst::CANCEL,
            },
        ] {
            enc.encode(&f, &mut out).unwrap();
        }
        swr.write_all(&out).await.unwrap();
        assert_eq!(
            a.inbound.recv().await.unwrap(),
            Bytes::from_static(b"status")
        );
        assert!(a.inbound.recv().await.is_none(), "FIN ends the stream");
        assert!(b.inbound.recv().await.is_none(), "RST ends the stream");
        // The ping comes back.
        loop {
            srd.read_buf(&mut buf).await.unwrap();
            if let Some(f) = codec.decode(&mut buf).unwrap() {
                assert_eq!(f, Frame::Ping { id: 2 });
                break;
            }
        }
        b.writer.write(Bytes::from_static(b"x")).await.unwrap_err();
        drop(swr);
        drop(srd);
        conn.close().await;
    }
}

//! The server side of one SPDY/3.1 connection.
//!
//! Two tasks own the socket: the reader decodes frames and routes them (new
//! streams to the session's handler, data to per-stream [`Inbound`] queues,
//! window updates to blocked writers); the writer encodes frames in the order
//! they are queued, control frames first, so a SYN_REPLY always precedes the
//! data of its stream. Both share one cancellation token: the client going
//! away, a protocol error, the idle watchdog or [`Session::close`] ends both.
//!
//! Flow control: the receive side tracks consumption and grants window back
//! with WINDOW_UPDATE (stream and session). The send side honours the peer's
//! windows only once the peer shows it implements them (it sent a
//! WINDOW_UPDATE or SETTINGS_INITIAL_WINDOW_SIZE): the Go `spdystream` library
//! every Kubernetes client uses never sends window updates, and enforcing a
//! 64 KiB window against it would stall any output larger than that.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;

use super::frame::{goaway, rst, Frame, FrameCodec, FLAG_FIN, SETTINGS_INITIAL_WINDOW_SIZE};
use super::headers::HeaderList;
use crate::streaming::activity::Activity;
use crate::streaming::channel::{ChannelWriter, Inbound};

/// Initial window of SPDY/3 streams and of the SPDY/3.1 session.
pub const DEFAULT_WINDOW: i64 = 64 * 1024;
/// Largest DATA payload this side sends in one frame.
const MAX_CHUNK: usize = 32 * 1024;
/// Window is granted back once this much was consumed.
// A positive constant (half of 64 KiB).
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
const WINDOW_ACK_THRESHOLD: usize = DEFAULT_WINDOW as usize / 2;

enum Out {
    Frame(Frame),
    Shutdown(oneshot::Sender<()>),
}

struct StreamState {
    inbound: Option<mpsc::Sender<Bytes>>,
    send_window: i64,
    reset: bool,
    local_closed: bool,
}

struct State {
    streams: HashMap<u32, StreamState>,
    session_send_window: i64,
    initial_send_window: i64,
    enforce_send_window: bool,
    last_client_stream: u32,
    going_away: bool,
}

struct Shared {
    state: Mutex<State>,
    window_changed: Notify,
    ctrl: mpsc::UnboundedSender<Out>,
    data: mpsc::Sender<Out>,
    cancel: CancellationToken,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the map half-updated in a
        // way that matters more than losing the connection, so keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn send_ctrl(&self, f: Frame) {
        let _ = self.ctrl.send(Out::Frame(f));
    }

    fn forget_if_done(&self, st: &mut State, id: u32) {
        if let Some(s) = st.streams.get(&id) {
            if s.reset || (s.local_closed && s.inbound.is_none()) {
                st.streams.remove(&id);
            }
        }
    }
}

/// A stream the client opened.
#[derive(Debug)]
pub struct IncomingStream {
    /// The stream id (odd).
    pub id: u32,
    /// Its SYN_STREAM headers, names lower-case.
    pub headers: HeaderList,
    /// What the client sends on it.
    pub inbound: Inbound,
    /// Sends to the client on it.
    pub writer: SpdyWriter,
}

impl IncomingStream {
    /// Value of header `name`, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        super::headers::get(&self.headers, name)
    }
}

/// Writes DATA frames on one stream.
pub struct SpdyWriter {
    id: u32,
    shared: Arc<Shared>,
    closed: bool,
}

// By hand: it holds handles (tasks, streams, callbacks, stores) with no useful
// Debug of their own.
impl std::fmt::Debug for SpdyWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpdyWriter").finish_non_exhaustive()
    }
}

/// The error a write to a closed or reset stream gets (server and client alike).
pub(crate) fn broken(id: u32) -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        format!("spdy stream {id} is closed"),
    )
}

impl SpdyWriter {
    /// Waits until `want` bytes (or part of them) may be sent.
    async fn reserve(&self, want: usize) -> io::Result<usize> {
        loop {
            let notified = self.shared.window_changed.notified();
            {
                let mut st = self.shared.lock();
                let enforce = st.enforce_send_window;
                let session = st.session_send_window;
                let s = match st.streams.get_mut(&self.id) {
                    Some(s) if !s.reset => s,
                    _ => return Err(broken(self.id)),
                };
                if !enforce {
                    return Ok(want.min(MAX_CHUNK));
                }
                let window = s.send_window.min(session);
                if window > 0 {
                    let n = want
                        .min(MAX_CHUNK)
                        .min(usize::try_from(window).unwrap_or(usize::MAX));
                    // n <= window, an i64.
                    let spent = i64::try_from(n).unwrap_or(window);
                    s.send_window -= spent;
                    st.session_send_window -= spent;
                    return Ok(n);
                }
            }
            tokio::select! {
                _ = notified => {}
                _ = self.shared.cancel.cancelled() => return Err(broken(self.id)),
            }
        }
    }

    async fn queue(&self, f: Frame) -> io::Result<()> {
        self.shared
            .data
            .send(Out::Frame(f))
            .await
            .map_err(|_| broken(self.id))
    }
}

#[async_trait::async_trait]
impl ChannelWriter for SpdyWriter {
    async fn write(&mut self, mut data: Bytes) -> io::Result<()> {
        if self.closed {
            return Err(broken(self.id));
        }
        while !data.is_empty() {
            let n = self.reserve(data.len()).await?;
            let chunk = data.split_to(n);
            self.queue(Frame::Data {
                stream_id: self.id,
                flags: 0,
                data: chunk,
            })
            .await?;
        }
        Ok(())
    }

    async fn close(&mut self) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        {
            let mut st = self.shared.lock();
            match st.streams.get_mut(&self.id) {
                Some(s) if !s.reset => s.local_closed = true,
                _ => return Ok(()),
            }
        }
        self.queue(Frame::Data {
            stream_id: self.id,
            flags: FLAG_FIN,
            data: Bytes::new(),
        })
        .await?;
        let mut st = self.shared.lock();
        self.shared.forget_if_done(&mut st, self.id);
        Ok(())
    }
}

/// One server-side SPDY connection.
pub struct Session {
    shared: Arc<Shared>,
}

// By hand: it holds handles (tasks, streams, callbacks, stores) with no useful
// Debug of their own.
impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

impl Session {
    /// Starts serving `io`; streams the client opens arrive on the returned receiver.
    pub(crate) fn start<IO>(
        io: IO,
        activity: Arc<Activity>,
        cancel: CancellationToken,
    ) -> (Session, mpsc::Receiver<IncomingStream>)
    where
        IO: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (ctrl_tx, ctrl_rx) = mpsc::unbounded_channel();
        let (data_tx, data_rx) = mpsc::channel(64);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                streams: HashMap::new(),
                session_send_window: DEFAULT_WINDOW,
                initial_send_window: DEFAULT_WINDOW,
                enforce_send_window: false,
                last_client_stream: 0,
                going_away: false,
            }),
            window_changed: Notify::new(),
            ctrl: ctrl_tx,
            data: data_tx,
            cancel,
        });
        let (rd, wr) = tokio::io::split(io);
        let (incoming_tx, incoming_rx) = mpsc::channel(16);
        tokio::spawn(write_loop(
            wr,
            shared.clone(),
            ctrl_rx,
            data_rx,
            activity.clone(),
        ));
        tokio::spawn(read_loop(rd, shared.clone(), incoming_tx, activity));
        (Session { shared }, incoming_rx)
    }

    /// The token that ends this connection.
    pub fn cancel_token(&self) -> CancellationToken {
        self.shared.cancel.clone()
    }

    /// Ends the session gracefully: everything queued is sent, then GOAWAY,
    /// then the socket is shut down and both tasks stop.
    pub async fn close(self) {
        let last = self.shared.lock().last_client_stream;
        let _ = self
            .shared
            .data
            .send(Out::Frame(Frame::GoAway {
                last_good_stream_id: last,
                status: goaway::OK,
            }))
            .await;
        let (tx, rx) = oneshot::channel();
        if self.shared.data.send(Out::Shutdown(tx)).await.is_ok() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), rx).await;
        }
        self.shared.cancel.cancel();
    }
}

async fn write_loop<W: AsyncWrite>(
    wr: W,
    shared: Arc<Shared>,
    mut ctrl: mpsc::UnboundedReceiver<Out>,
    mut data: mpsc::Receiver<Out>,
    activity: Arc<Activity>,
) {
    tokio::pin!(wr);
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::new();
    loop {
        let out = tokio::select! {
            biased;
            Some(o) = ctrl.recv() => o,
            Some(o) = data.recv() => o,
            _ = shared.cancel.cancelled() => break,
            else => break,
        };
        match out {
            Out::Frame(f) => {
                buf.clear();
                if let Err(e) = codec.encode(&f, &mut buf) {
                    tracing::warn!(error = %e, "spdy: cannot encode frame");
                    break;
                }
                if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
                    break;
                }
                activity.touch_out(buf.len());
            }
            Out::Shutdown(done) => {
                let _ = wr.shutdown().await;
                let _ = done.send(());
                break;
            }
        }
    }
    shared.cancel.cancel();
}

async fn read_loop<R: AsyncRead>(
    rd: R,
    shared: Arc<Shared>,
    incoming: mpsc::Sender<IncomingStream>,
    activity: Arc<Activity>,
) {
    tokio::pin!(rd);
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::with_capacity(16 * 1024);
    'conn: loop {
        let n = tokio::select! {
            r = rd.read_buf(&mut buf) => r,
            _ = shared.cancel.cancelled() => break,
        };
        match n {
            Ok(0) | Err(_) => break,
            Ok(n) => activity.touch_in(n),
        }
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    if !handle(&shared, &incoming, frame).await {
                        break 'conn;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "spdy: closing connection");
                    let last = shared.lock().last_client_stream;
                    shared.send_ctrl(Frame::GoAway {
                        last_good_stream_id: last,
                        status: goaway::PROTOCOL_ERROR,
                    });
                    // Give the writer a moment to get the GOAWAY out.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    break 'conn;
                }
            }
        }
    }
    // The client is gone: end every inbound queue and the session.
    shared.lock().streams.clear();
    shared.window_changed.notify_waiters();
    shared.cancel.cancel();
}

/// Routes one frame; `false` ends the connection.
async fn handle(
    shared: &Arc<Shared>,
    incoming: &mpsc::Sender<IncomingStream>,
    frame: Frame,
) -> bool {
    match frame {
        Frame::SynStream {
            stream_id,
            flags,
            headers,
            ..
        } => {
            let (tx, inbound) = Inbound::channel();
            {
                let mut st = shared.lock();
                if st.going_away {
                    drop(st);
                    shared.send_ctrl(Frame::RstStream {
                        stream_id,
                        status: rst::REFUSED_STREAM,
                    });
                    return true;
                }
                if stream_id % 2 == 0 || stream_id <= st.last_client_stream {
                    let status = if st.streams.contains_key(&stream_id) {
                        rst::STREAM_IN_USE
                    } else {
                        rst::PROTOCOL_ERROR
                    };
                    drop(st);
                    shared.send_ctrl(Frame::RstStream { stream_id, status });
                    return true;
                }
                st.last_client_stream = stream_id;
                let send_window = st.initial_send_window;
                st.streams.insert(
                    stream_id,
                    StreamState {
                        inbound: (flags & FLAG_FIN == 0).then_some(tx),
                        send_window,
                        reset: false,
                        local_closed: false,
                    },
                );
            }
            shared.send_ctrl(Frame::SynReply {
                stream_id,
                flags: 0,
                headers: Vec::new(),
            });
            let ack = window_acker(shared, stream_id);
            let stream = IncomingStream {
                id: stream_id,
                headers,
                inbound: inbound.with_consume_hook(ack),
                writer: SpdyWriter {
                    id: stream_id,
                    shared: shared.clone(),
                    closed: false,
                },
            };
            // A handler that stopped accepting streams just lets them drop.
            let _ = incoming.send(stream).await;
        }
        Frame::Data {
            stream_id,
            flags,
            data,
        } => {
            let tx = {
                let mut st = shared.lock();
                match st.streams.get_mut(&stream_id) {
                    None => {
                        drop(st);
                        shared.send_ctrl(Frame::RstStream {
                            stream_id,
                            status: rst::INVALID_STREAM,
                        });
                        return true;
                    }
                    Some(s) if s.inbound.is_none() => {
                        drop(st);
                        shared.send_ctrl(Frame::RstStream {
                            stream_id,
                            status: rst::STREAM_ALREADY_CLOSED,
                        });
                        return true;
                    }
                    Some(s) => {
                        let tx = s.inbound.clone();
                        if flags & FLAG_FIN != 0 {
                            s.inbound = None;
                        }
                        shared.forget_if_done(&mut st, stream_id);
                        tx
                    }
                }
            };
            if let (Some(tx), false) = (tx, data.is_empty()) {
                tokio::select! {
                    // A consumer that went away just loses the data.
                    _ = tx.send(data) => {}
                    _ = shared.cancel.cancelled() => return false,
                }
            }
        }
        Frame::Headers {
            stream_id, flags, ..
        } => {
            if flags & FLAG_FIN != 0 {
                let mut st = shared.lock();
                if let Some(s) = st.streams.get_mut(&stream_id) {
                    s.inbound = None;
                }
                shared.forget_if_done(&mut st, stream_id);
            }
        }
        Frame::RstStream { stream_id, .. } => {
            let mut st = shared.lock();
            if let Some(s) = st.streams.get_mut(&stream_id) {
                s.reset = true;
                s.inbound = None;
            }
            shared.forget_if_done(&mut st, stream_id);
            drop(st);
            shared.window_changed.notify_waiters();
        }
        Frame::Settings { entries, .. } => {
            let mut st = shared.lock();
            for e in entries {
                if e.id == SETTINGS_INITIAL_WINDOW_SIZE {
                    let new = i64::from(e.value & 0x7fff_ffff);
                    let delta = new - st.initial_send_window;
                    st.initial_send_window = new;
                    st.enforce_send_window = true;
                    for s in st.streams.values_mut() {
                        s.send_window += delta;
                    }
                }
            }
            drop(st);
            shared.window_changed.notify_waiters();
        }
        Frame::WindowUpdate { stream_id, delta } => {
            let mut st = shared.lock();
            st.enforce_send_window = true;
            if stream_id == 0 {
                st.session_send_window += i64::from(delta);
            } else if let Some(s) = st.streams.get_mut(&stream_id) {
                s.send_window += i64::from(delta);
            }
            drop(st);
            shared.window_changed.notify_waiters();
        }
        Frame::Ping { id } => {
            // Odd ids are the client's pings; even ones would answer ours.
            if id % 2 == 1 {
                shared.send_ctrl(Frame::Ping { id });
            }
        }
        Frame::GoAway { .. } => {
            shared.lock().going_away = true;
        }
        Frame::SynReply { .. } | Frame::Unknown { .. } => {}
    }
    true
}

/// Grants the client window back as the consumer takes data off a stream.
fn window_acker(shared: &Arc<Shared>, stream_id: u32) -> Box<dyn Fn(usize) + Send + Sync> {
    let ctrl = shared.ctrl.clone();
    let pending = std::sync::atomic::AtomicUsize::new(0);
    Box::new(move |n| {
        use std::sync::atomic::Ordering;
        let total = pending.fetch_add(n, Ordering::Relaxed) + n;
        if total >= WINDOW_ACK_THRESHOLD {
            pending.store(0, Ordering::Relaxed);
            // SPDY windows are 31-bit: never more than that is pending.
            let delta = u32::try_from(total).unwrap_or(u32::MAX >> 1);
            let _ = ctrl.send(Out::Frame(Frame::WindowUpdate { stream_id, delta }));
            let _ = ctrl.send(Out::Frame(Frame::WindowUpdate {
                stream_id: 0,
                delta,
            }));
        }
    })
}

//! Exec/attach over WebSocket: five fixed channels (0 stdin, 1 stdout,
//! 2 stderr, 3 error, 4 resize).

use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use super::activity::Activity;
use super::channel::BoxChannelWriter;
use super::remotecommand::{self, RemoteCommand, Streams};
use super::websocket::{WsMux, WsProtocol};
use super::Limits;
use super::StreamRuntime;

/// Channel numbers of the remote-command protocol.
pub const STDIN: u8 = 0;
/// Process stdout (or the terminal).
pub const STDOUT: u8 = 1;
/// Process stderr.
pub const STDERR: u8 = 2;
/// Status at the end.
pub const ERROR: u8 = 3;
/// Terminal size changes from the client.
pub const RESIZE: u8 = 4;

/// Serves one remote command on an upgraded WebSocket.
pub(crate) async fn serve<S>(
    ws: WebSocketStream<S>,
    proto: WsProtocol,
    rc: RemoteCommand,
    runtime: Arc<dyn StreamRuntime>,
    limits: Limits,
    cancel: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Activity::new();
    activity.spawn_watchdog(limits.idle, cancel.clone());
    let (mux, mut inbounds) = WsMux::start(ws, proto, 5, activity, cancel.clone());
    let o = rc.opts;
    let mut stdout: Option<BoxChannelWriter> = o.stdout.then(|| Box::new(mux.writer(STDOUT)) as _);
    let mut stderr: Option<BoxChannelWriter> = o.stderr.then(|| Box::new(mux.writer(STDERR)) as _);
    let mut error: BoxChannelWriter = Box::new(mux.writer(ERROR));
    // Tell the client the connection is up: an empty message on the lowest
    // channel it reads.
    let hello = match (stdout.as_mut(), stderr.as_mut()) {
        (Some(w), _) | (None, Some(w)) => w.write(Bytes::new()).await,
        (None, None) => error.write(Bytes::new()).await,
    };
    if hello.is_err() {
        return;
    }
    let streams = Streams {
        stdin: inbounds[STDIN as usize].take().filter(|_| o.stdin),
        stdout,
        stderr,
        resize: inbounds[RESIZE as usize].take().filter(|_| o.tty),
        error,
        json_status: proto.json_status,
    };
    // Channels the client may not write to: drop their queues so stray data is discarded.
    drop(inbounds);
    remotecommand::run(runtime, &rc, streams, cancel.clone()).await;
    if !cancel.is_cancelled() {
        mux.close().await;
    }
}

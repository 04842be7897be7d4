//! Kubernetes' channel framing over WebSocket (RFC 6455 via tungstenite).
//!
//! Every message carries one channel: binary protocols prefix the payload with
//! the channel byte, base64 protocols send text whose first character is the
//! channel digit followed by the base64 payload. A WebSocket cannot half-close
//! one channel, so `v5.channel.k8s.io` adds a control message `[255, channel]`
//! with which the client closes a channel (stdin).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use super::activity::Activity;
use super::channel::{ChannelWriter, Inbound};

/// The v5 control channel that closes another channel.
pub const CLOSE_CHANNEL: u8 = 255;

/// Properties of a negotiated channel subprotocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsProtocol {
    /// Text messages with base64 payloads instead of binary messages.
    pub base64: bool,
    /// `[255, channel]` closes a channel (v5).
    pub close_signal: bool,
    /// The error channel carries a JSON Status (v4 and later).
    pub json_status: bool,
}

impl WsProtocol {
    /// The properties of subprotocol `name` (`""` when the client offered none).
    pub fn from_name(name: &str) -> WsProtocol {
        WsProtocol {
            base64: name.contains("base64"),
            close_signal: name == "v5.channel.k8s.io",
            json_status: name.starts_with("v4.") || name.starts_with("v5."),
        }
    }
}

enum WsOut {
    Data(u8, Bytes),
    Close(oneshot::Sender<()>),
}

/// The sending half of a channel-multiplexed WebSocket.
pub(crate) struct WsMux {
    out: mpsc::Sender<WsOut>,
    cancel: CancellationToken,
}

/// Sends on one channel.
pub(crate) struct WsWriter {
    channel: u8,
    out: mpsc::Sender<WsOut>,
}

#[async_trait::async_trait]
impl ChannelWriter for WsWriter {
    async fn write(&mut self, data: Bytes) -> std::io::Result<()> {
        self.out
            .send(WsOut::Data(self.channel, data))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "websocket closed"))
    }

    async fn close(&mut self) -> std::io::Result<()> {
        // The server never half-closes a channel; the session's end closes all.
        Ok(())
    }
}

impl WsMux {
    /// Starts the reader and writer tasks; returns the mux and one inbound
    /// queue per channel (`channels` of them).
    pub(crate) fn start<S>(
        ws: WebSocketStream<S>,
        proto: WsProtocol,
        channels: usize,
        activity: Arc<Activity>,
        cancel: CancellationToken,
    ) -> (WsMux, Vec<Option<Inbound>>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sink, stream) = ws.split();
        let (out_tx, out_rx) = mpsc::channel(64);
        let mut senders = Vec::with_capacity(channels);
        let mut inbounds = Vec::with_capacity(channels);
        for _ in 0..channels {
            let (tx, rx) = Inbound::channel();
            senders.push(Some(tx));
            inbounds.push(Some(rx));
        }
        tokio::spawn(write_loop(
            sink,
            proto,
            out_rx,
            activity.clone(),
            cancel.clone(),
        ));
        tokio::spawn(read_loop(stream, proto, senders, activity, cancel.clone()));
        (
            WsMux {
                out: out_tx,
                cancel,
            },
            inbounds,
        )
    }

    /// A writer for `channel`.
    pub(crate) fn writer(&self, channel: u8) -> WsWriter {
        WsWriter {
            channel,
            out: self.out.clone(),
        }
    }

    /// Sends a normal close after everything queued, waits briefly for the
    /// client's close, then ends both tasks.
    pub(crate) async fn close(self) {
        let (tx, rx) = oneshot::channel();
        if self.out.send(WsOut::Close(tx)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
            let _ = tokio::time::timeout(Duration::from_secs(2), self.cancel.cancelled()).await;
        }
        self.cancel.cancel();
    }
}

async fn write_loop<K>(
    mut sink: K,
    proto: WsProtocol,
    mut out: mpsc::Receiver<WsOut>,
    activity: Arc<Activity>,
    cancel: CancellationToken,
) where
    K: futures::Sink<Message> + Unpin,
{
    loop {
        let item = tokio::select! {
            o = out.recv() => o,
            _ = cancel.cancelled() => None,
        };
        match item {
            Some(WsOut::Data(ch, data)) => {
                let msg = if proto.base64 {
                    let mut text = String::with_capacity(1 + data.len() * 4 / 3 + 4);
                    text.push(char::from(b'0' + ch));
                    base64::engine::general_purpose::STANDARD.encode_string(&data, &mut text);
                    Message::text(text)
                } else {
                    let mut v = Vec::with_capacity(data.len() + 1);
                    v.push(ch);
                    v.extend_from_slice(&data);
                    Message::binary(v)
                };
                let len = msg.len();
                if sink.send(msg).await.is_err() {
                    break;
                }
                activity.touch_out(len);
            }
            Some(WsOut::Close(done)) => {
                let frame = CloseFrame {
                    code: CloseCode::Normal,
                    reason: "".into(),
                };
                let _ = sink.send(Message::Close(Some(frame))).await;
                let _ = done.send(());
                // Keep the sink alive so the reader can take the client's close.
                cancel.cancelled().await;
                return;
            }
            None => break,
        }
    }
    cancel.cancel();
}

async fn read_loop<R>(
    mut stream: R,
    proto: WsProtocol,
    mut senders: Vec<Option<mpsc::Sender<Bytes>>>,
    activity: Arc<Activity>,
    cancel: CancellationToken,
) where
    R: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let msg = tokio::select! {
            m = stream.next() => m,
            _ = cancel.cancelled() => break,
        };
        let msg = match msg {
            Some(Ok(m)) => m,
            _ => break,
        };
        activity.touch_in(msg.len());
        let (channel, payload) = match msg {
            Message::Binary(b) if !proto.base64 => {
                let Some((&ch, rest)) = b.split_first() else {
                    continue;
                };
                if proto.close_signal && ch == CLOSE_CHANNEL {
                    if let Some(&target) = rest.first() {
                        if let Some(s) = senders.get_mut(target as usize) {
                            *s = None;
                        }
                    }
                    continue;
                }
                (ch, Bytes::copy_from_slice(rest))
            }
            Message::Text(t) if proto.base64 => {
                let t = t.as_str();
                let Some(ch) = t.bytes().next().and_then(|c| c.checked_sub(b'0')) else {
                    continue;
                };
                match base64::engine::general_purpose::STANDARD.decode(&t[1..]) {
                    Ok(p) => (ch, Bytes::from(p)),
                    Err(_) => {
                        tracing::debug!("websocket: bad base64 payload, ignored");
                        continue;
                    }
                }
            }
            Message::Close(_) => break,
            _ => continue,
        };
        if payload.is_empty() {
            continue;
        }
        let Some(Some(tx)) = senders.get(channel as usize) else {
            continue;
        };
        tokio::select! {
            _ = tx.send(payload) => {}
            _ = cancel.cancelled() => break,
        }
    }
    cancel.cancel();
}

//! The client side of Kubernetes' channel framing over WebSocket: dial,
//! handshake offering subprotocols, then one writer task (messages
//! `[channel, payload…]`) and one reader task that routes each binary
//! message's payload to its channel's queue by the first byte.

use std::io;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::upgrade::refused;
use super::Target;
use crate::error::{Error, Result};
use crate::streaming::channel::ChannelWriter;
use crate::streaming::websocket::CLOSE_CHANNEL;

/// Messages queued for the writer before senders wait.
const OUT_QUEUE: usize = 64;
/// Payloads queued per channel before the reader waits (back-pressure).
const IN_QUEUE: usize = 64;

/// An open channel-multiplexed WebSocket; dropping it closes the socket.
pub(crate) struct Mux {
    /// The subprotocol the server picked.
    pub protocol: String,
    /// One queue per channel `0..channels`; payloads without the channel byte.
    pub inbound: Vec<Option<mpsc::Receiver<Bytes>>>,
    out: mpsc::Sender<Message>,
    cancel: CancellationToken,
    _end_on_drop: DropGuard,
}

/// Sends on one channel.
pub(crate) struct ChannelOut {
    channel: u8,
    out: mpsc::Sender<Message>,
    /// `v5.channel.k8s.io`: closing sends `[255, channel]`.
    close_signal: bool,
    closed: bool,
}

fn broken() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "websocket is closed")
}

#[async_trait::async_trait]
impl ChannelWriter for ChannelOut {
    async fn write(&mut self, data: Bytes) -> io::Result<()> {
        if self.closed {
            return Err(broken());
        }
        let mut v = Vec::with_capacity(data.len() + 1);
        v.push(self.channel);
        v.extend_from_slice(&data);
        self.out
            .send(Message::binary(v))
            .await
            .map_err(|_| broken())
    }

    async fn close(&mut self) -> io::Result<()> {
        if std::mem::replace(&mut self.closed, true) || !self.close_signal {
            // Before v5 a channel cannot be half-closed: the server sees EOF
            // only when the connection ends.
            return Ok(());
        }
        self.out
            .send(Message::binary(vec![CLOSE_CHANNEL, self.channel]))
            .await
            .map_err(|_| broken())
    }
}

/// The `ws://` form of an `http://` streaming URL.
pub(crate) fn ws_url(target: &Target) -> String {
    format!("ws://{}{}", target.authority, target.path)
}

impl Mux {
    /// Dials `target`, offers `protocols` (preferred first), and starts the
    /// tasks with `channels` inbound queues.
    pub(crate) async fn connect(
        target: &Target,
        protocols: &[&str],
        channels: usize,
    ) -> Result<Mux> {
        let mut req = ws_url(target)
            .into_client_request()
            .map_err(|e| Error::InvalidArgument(format!("streaming url: {e}")))?;
        let offer = HeaderValue::from_str(&protocols.join(", "))
            .map_err(|e| Error::InvalidArgument(format!("websocket protocols: {e}")))?;
        req.headers_mut().insert("sec-websocket-protocol", offer);
        let tcp = target.dial().await?;
        let (ws, resp) = match tokio_tungstenite::client_async(req, tcp).await {
            Ok(r) => r,
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let body = resp
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                return Err(refused(&target.path, resp.status().as_u16(), &body));
            }
            Err(e) => {
                return Err(Error::Unavailable(format!(
                    "streaming: websocket handshake with {}: {e}",
                    target.authority
                )))
            }
        };
        let protocol = resp
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        if !protocols.contains(&protocol.as_str()) {
            return Err(Error::Internal(format!(
                "streaming: server picked websocket protocol {protocol:?}, not one of {protocols:?}"
            )));
        }
        let (sink, stream) = ws.split();
        let (out_tx, out_rx) = mpsc::channel(OUT_QUEUE);
        let cancel = CancellationToken::new();
        let mut senders = Vec::with_capacity(channels);
        let mut inbound = Vec::with_capacity(channels);
        for _ in 0..channels {
            let (tx, rx) = mpsc::channel(IN_QUEUE);
            senders.push(Some(tx));
            inbound.push(Some(rx));
        }
        tokio::spawn(write_loop(sink, out_rx, cancel.clone()));
        tokio::spawn(read_loop(stream, senders, cancel.clone()));
        Ok(Mux {
            protocol,
            inbound,
            out: out_tx,
            _end_on_drop: cancel.clone().drop_guard(),
            cancel,
        })
    }

    /// A writer for `channel`.
    pub(crate) fn writer(&self, channel: u8) -> ChannelOut {
        ChannelOut {
            channel,
            out: self.out.clone(),
            close_signal: self.protocol == "v5.channel.k8s.io",
            closed: false,
        }
    }

    /// Sends a normal close and stops both tasks.
    pub(crate) async fn close(self) {
        let _ = self.out.send(Message::Close(None)).await;
        let _ = tokio::time::timeout(
            std::time::Duration::from_millis(200),
            self.cancel.cancelled(),
        )
        .await;
        self.cancel.cancel();
    }
}

async fn write_loop<K>(mut sink: K, mut out: mpsc::Receiver<Message>, cancel: CancellationToken)
where
    K: futures::Sink<Message> + Unpin,
{
    loop {
        let msg = tokio::select! {
            m = out.recv() => m,
            _ = cancel.cancelled() => None,
        };
        let Some(msg) = msg else { break };
        let close = matches!(msg, Message::Close(_));
        if sink.send(msg).await.is_err() || close {
            break;
        }
    }
    let _ = sink.close().await;
    cancel.cancel();
}

async fn read_loop<R>(
    mut stream: R,
    senders: Vec<Option<mpsc::Sender<Bytes>>>,
    cancel: CancellationToken,
) where
    R: futures::Stream<Item = std::result::Result<Message, tokio_tungstenite::tungstenite::Error>>
        + Unpin,
{
    loop {
        let msg = tokio::select! {
            m = stream.next() => m,
            _ = cancel.cancelled() => break,
        };
        let b = match msg {
            Some(Ok(Message::Binary(b))) => b,
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
            Some(Ok(_)) => continue,
        };
        let Some((&ch, _)) = b.split_first() else {
            continue;
        };
        // An empty payload is the server's "connection is up" hello.
        if b.len() == 1 {
            continue;
        }
        if let Some(Some(tx)) = senders.get(ch as usize) {
            tokio::select! {
                // A consumer that dropped its queue just loses the data.
                _ = tx.send(b.slice(1..)) => {}
                _ = cancel.cancelled() => break,
            }
        }
    }
    drop(senders);
    cancel.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

    /// A fake server: checks the offered subprotocols, picks v5, says hello
    /// with an empty message, sends on stdout/stderr/error, and expects the
    /// client's stdin followed by the v5 close signal for channel 0.
    #[tokio::test]
    async fn channels_are_routed_and_v5_closes_stdin() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            // The error type is tungstenite's, not ours to shrink.
            #[allow(clippy::result_large_err)]
            let pick = |req: &Request, mut resp: Response| {
                let offered = req.headers()["sec-websocket-protocol"].to_str().unwrap();
                assert_eq!(offered, "v5.channel.k8s.io, v4.channel.k8s.io");
                assert_eq!(req.uri().path(), "/exec/tok");
                resp.headers_mut().insert(
                    "sec-websocket-protocol",
                    HeaderValue::from_static("v5.channel.k8s.io"),
                );
                Ok(resp)
            };
            let mut ws = tokio_tungstenite::accept_hdr_async(tcp, pick)
                .await
                .unwrap();
            for m in [
                &b"\x01"[..],
                b"\x01ok",
                b"\x02err",
                b"\x03{\"status\":\"Success\"}",
            ] {
                ws.send(Message::binary(m.to_vec())).await.unwrap();
            }
            let mut got = Vec::new();
            while got.len() < 2 {
                match ws.next().await.unwrap().unwrap() {
                    Message::Binary(b) => got.push(b.to_vec()),
                    other => panic!("{other:?}"),
                }
            }
            ws.close(None).await.unwrap();
            got
        });
        let target = Target {
            authority: addr.to_string(),
            path: "/exec/tok".into(),
            tls: None,
        };
        let mut mux = Mux::connect(&target, &["v5.channel.k8s.io", "v4.channel.k8s.io"], 5)
            .await
            .unwrap();
        assert_eq!(mux.protocol, "v5.channel.k8s.io");
        let mut stdin = mux.writer(0);
        stdin.write(Bytes::from_static(b"hi")).await.unwrap();
        stdin.close().await.unwrap();
        let mut recv_all = |ch: usize| {
            let mut rx = mux.inbound[ch].take().unwrap();
            async move {
                let mut v = Vec::new();
                while let Some(b) = rx.recv().await {
                    v.extend_from_slice(&b);
                }
                v
            }
        };
        let (out, err, status) = tokio::join!(recv_all(1), recv_all(2), recv_all(3));
        assert_eq!(out, b"ok", "the empty hello is not data");
        assert_eq!(err, b"err");
        assert_eq!(status, br#"{"status":"Success"}"#);
        assert_eq!(
            server.await.unwrap(),
            vec![b"\x00hi".to_vec(), vec![255, 0]]
        );
        stdin.write(Bytes::from_static(b"x")).await.unwrap_err();
        mux.close().await;
    }

    #[tokio::test]
    async fn refused_upgrade_maps_to_not_found() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = tcp.read(&mut buf).await;
            let body = "404 page not found\n";
            let resp = format!(
                "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            tcp.write_all(resp.as_bytes()).await.unwrap();
        });
        let target = Target {
            authority: addr.to_string(),
            path: "/exec/used".into(),
            tls: None,
        };
        let e = Mux::connect(&target, &["v5.channel.k8s.io"], 5)
            .await
            .err()
            .unwrap();
        assert!(matches!(e, Error::NotFound(_)), "{e}");
    }
}

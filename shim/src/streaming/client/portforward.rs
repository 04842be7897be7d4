//! Port-forward from the client side: one local byte stream (usually an
//! accepted TCP connection) connected to a port in the pod.
//!
//! SPDY (`portforward.k8s.io`): an error stream and a data stream sharing a
//! `requestID`, both naming the `port`; local EOF half-closes the data stream,
//! the server's FIN on it ends the forward. WebSocket (`v4.channel.k8s.io`):
//! the URL's request forwards its ports on channel pairs (data 2i, error
//! 2i+1), and the first two bytes on each are the port, little-endian.

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::spdy::Connection;
use super::ws::Mux;
use super::{upgrade, Target, TlsTrust, Transport};
use crate::error::{Error, Result};
use crate::streaming::channel::{BoxChannelWriter, ChannelWriter};

const SPDY_PROTOCOLS: &[&str] = &["portforward.k8s.io"];
const WS_PROTOCOLS: &[&str] = &["v4.channel.k8s.io"];

/// Forwards `conn` to `port` in the pod of the PortForward request behind
/// `url` until the pod side closes (or the connection fails). The request
/// must name `port` (over WebSocket, as its only port). Returns the server's
/// error message as an error when it reports one (nothing listening, …).
pub async fn port_forward<S>(url: &str, transport: Transport, port: u16, conn: S) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Send + Unpin,
{
    port_forward_trusting(url, transport, &TlsTrust::System, port, conn).await
}

/// [`port_forward`], trusting `trust` (instead of the system CA bundle)
/// when `url` is `https://`.
pub async fn port_forward_trusting<S>(
    url: &str,
    transport: Transport,
    trust: &TlsTrust,
    port: u16,
    conn: S,
) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Send + Unpin,
{
    let target = Target::parse_trusting(url, trust)?;
    match transport {
        Transport::Spdy => {
            let up = upgrade::spdy(&target, SPDY_PROTOCOLS).await?;
            let session = Connection::start(up.io, up.leftover);
            let io_err = |e: std::io::Error| Error::Unavailable(format!("streaming: {e}"));
            let headers = |kind: &str| {
                vec![
                    ("streamType".to_string(), kind.to_string()),
                    ("port".to_string(), port.to_string()),
                    ("requestID".to_string(), "0".to_string()),
                ]
            };
            let error = session.open(headers("error")).await.map_err(io_err)?;
            // This side never writes on the error stream.
            let mut error_w = error.writer;
            let _ = error_w.close().await;
            let data = session.open(headers("data")).await.map_err(io_err)?;
            let r = pump(conn, Box::new(data.writer), data.inbound, error.inbound, 0).await;
            session.close().await;
            r
        }
        Transport::WebSocket => {
            let sep = if target.path.contains('?') { '&' } else { '?' };
            let target = Target {
                path: format!("{}{sep}ports={port}", target.path),
                ..target
            };
            let mut mux = Mux::connect(&target, WS_PROTOCOLS, 2).await?;
            let data = mux.inbound[0].take().expect("data queue");
            let error = mux.inbound[1].take().expect("error queue");
            let r = pump(conn, Box::new(mux.writer(0)), data, error, 2).await;
            mux.close().await;
            r
        }
    }
}

/// Drops the first `n` bytes of a channel (the WebSocket port header).
async fn next_payload(rx: &mut mpsc::Receiver<Bytes>, skip: &mut usize) -> Option<Bytes> {
    loop {
        let mut b = rx.recv().await?;
        let cut = (*skip).min(b.len());
        *skip -= cut;
        let b = b.split_off(cut);
        if !b.is_empty() {
            return Some(b);
        }
    }
}

async fn pump<S>(
    conn: S,
    mut up: BoxChannelWriter,
    mut down: mpsc::Receiver<Bytes>,
    mut error: mpsc::Receiver<Bytes>,
    header_len: usize,
) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Send + Unpin,
{
    let (mut rd, mut wr) = tokio::io::split(conn);
    let upstream = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if up.write(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = up.close().await;
        std::future::pending::<()>().await
    };
    let downstream = async {
        let mut skip = header_len;
        while let Some(b) = next_payload(&mut down, &mut skip).await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    };
    let errors = async {
        let mut skip = header_len;
        let mut msg = Vec::new();
        while let Some(b) = next_payload(&mut error, &mut skip).await {
            msg.extend_from_slice(&b);
        }
        msg
    };
    tokio::pin!(upstream, downstream, errors);
    let mut down_done = false;
    let mut message: Option<Vec<u8>> = None;
    loop {
        tokio::select! {
            _ = &mut downstream, if !down_done => down_done = true,
            m = &mut errors, if message.is_none() => message = Some(m),
            _ = &mut upstream => {}
        }
        match (&message, down_done) {
            // A reported error ends the forward at once.
            (Some(m), _) if !m.is_empty() => break,
            (Some(_), true) => break,
            // The server writes its error, if any, before ending the data
            // stream; collect it without waiting on one that stays open.
            (None, true) => {
                let m = tokio::time::timeout(std::time::Duration::from_millis(500), &mut errors)
                    .await
                    .unwrap_or_default();
                message = Some(m);
                break;
            }
            _ => {}
        }
    }
    let message = message.unwrap_or_default();
    if message.is_empty() {
        Ok(())
    } else {
        Err(Error::Unavailable(format!(
            "port-forward: {}",
            String::from_utf8_lossy(&message).trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn websocket_port_header_is_skipped_across_messages() {
        let (tx, mut rx) = mpsc::channel(8);
        for m in [&b"\x90"[..], b"\x1f", b"", b"GET", b" /"] {
            tx.send(Bytes::copy_from_slice(m)).await.unwrap();
        }
        drop(tx);
        let mut skip = 2;
        assert_eq!(next_payload(&mut rx, &mut skip).await.unwrap(), "GET");
        assert_eq!(next_payload(&mut rx, &mut skip).await.unwrap(), " /");
        assert!(next_payload(&mut rx, &mut skip).await.is_none());
        let (tx, mut rx) = mpsc::channel(8);
        tx.send(Bytes::from_static(b"\x90\x1fdata")).await.unwrap();
        let mut skip = 2;
        assert_eq!(next_payload(&mut rx, &mut skip).await.unwrap(), "data");
    }
}

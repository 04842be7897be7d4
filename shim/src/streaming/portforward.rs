//! Port-forward over SPDY (`portforward.k8s.io`) and WebSocket.
//!
//! SPDY: for every forwarded connection the client opens an error stream and
//! a data stream carrying the same `requestID` and the target `port`; the
//! pair, once complete, is connected to `localhost:port` in the pod.
//! WebSocket: the ports come from the CRI request; port *i* uses channel 2*i*
//! for data and 2*i*+1 for errors, and the first message on each carries the
//! port as 16-bit little-endian.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use super::activity::Activity;
use super::channel::{BoxChannelWriter, ChannelWriter, Inbound};
use super::spdy::{IncomingStream, Session};
use super::websocket::{WsMux, WsProtocol};
use super::Limits;
use super::StreamRuntime;

/// Connects one forwarded connection to the pod's port and copies both ways
/// until the pod side closes or the client goes away.
async fn forward(
    runtime: Arc<dyn StreamRuntime>,
    pod: &str,
    port: u16,
    mut inbound: Inbound,
    data: &mut BoxChannelWriter,
    error: &mut BoxChannelWriter,
    cancel: &CancellationToken,
) {
    let conn = tokio::select! {
        c = runtime.port_forward(pod, port) => c,
        _ = cancel.cancelled() => return,
    };
    let conn = match conn {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("error forwarding port {port} to pod {pod}, uid : {e}");
            tracing::debug!(error = %msg);
            let _ = error.write(Bytes::from(msg)).await;
            return;
        }
    };
    let (mut rd, mut wr) = tokio::io::split(conn);
    let up = async {
        while let Some(chunk) = inbound.recv().await {
            if wr.write_all(&chunk).await.is_err() {
                break;
            }
        }
        // The client finished sending: half-close towards the pod.
        let _ = wr.shutdown().await;
        std::future::pending::<()>().await
    };
    let down = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if data.write(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = cancel.cancelled() => {}
    }
}

fn request_id(s: &IncomingStream, is_data: bool) -> String {
    match s.header("requestid") {
        Some(id) => id.to_string(),
        // Clients before requestID existed created the error stream, then the
        // data stream, with consecutive ids.
        None if is_data => s.id.saturating_sub(2).to_string(),
        None => s.id.to_string(),
    }
}

struct Pair {
    created: Instant,
    data: Option<IncomingStream>,
    error: Option<IncomingStream>,
}

/// Serves port-forward on an upgraded SPDY connection.
pub(crate) async fn serve_spdy<IO>(
    io: IO,
    pod: String,
    runtime: Arc<dyn StreamRuntime>,
    limits: Limits,
    cancel: CancellationToken,
) where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let activity = Activity::new();
    activity.spawn_watchdog(limits.idle, cancel.clone());
    let (session, mut incoming) = Session::start(io, activity, cancel.clone());
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            s = incoming.recv() => {
                let Some(s) = s else { break };
                let is_data = match s.header("streamtype") {
                    Some("data") => true,
                    Some("error") => false,
                    other => {
                        tracing::debug!(stream_type = ?other, "port-forward: ignoring stream");
                        continue;
                    }
                };
                let id = request_id(&s, is_data);
                let pair = pairs.entry(id.clone()).or_insert_with(|| Pair {
                    created: Instant::now(),
                    data: None,
                    error: None,
                });
                let slot = if is_data { &mut pair.data } else { &mut pair.error };
                if slot.is_some() {
                    tracing::debug!(request_id = %id, "port-forward: duplicate stream ignored");
                    continue;
                }
                *slot = Some(s);
                if pair.data.is_some() && pair.error.is_some() {
                    let pair = pairs.remove(&id).expect("pair present");
                    tokio::spawn(forward_pair(
                        pair,
                        pod.clone(),
                        runtime.clone(),
                        cancel.clone(),
                    ));
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                let expired: Vec<String> = pairs
                    .iter()
                    .filter(|(_, p)| now.duration_since(p.created) > limits.stream_creation)
                    .map(|(k, _)| k.clone())
                    .collect();
                for id in expired {
                    if let Some(Pair { error: Some(e), .. }) = pairs.remove(&id) {
                        let mut w = e.writer;
                        let msg = format!("timed out waiting for complete stream pair for request {id}");
                        let _ = w.write(Bytes::from(msg)).await;
                        let _ = w.close().await;
                    }
                }
            }
            _ = cancel.cancelled() => break,
        }
    }
    drop(session);
    cancel.cancel();
}

async fn forward_pair(
    pair: Pair,
    pod: String,
    runtime: Arc<dyn StreamRuntime>,
    cancel: CancellationToken,
) {
    let (Some(data), Some(error)) = (pair.data, pair.error) else {
        return;
    };
    let mut error_w: BoxChannelWriter = Box::new(error.writer);
    let mut data_w: BoxChannelWriter = Box::new(data.writer);
    let port = data
        .headers
        .iter()
        .find(|(n, _)| n == "port")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {
            forward(
                runtime,
                &pod,
                p,
                data.inbound,
                &mut data_w,
                &mut error_w,
                &cancel,
            )
            .await;
        }
        _ => {
            let msg = format!("error parsing port {port:?}: not a TCP port");
            let _ = error_w.write(Bytes::from(msg)).await;
        }
    }
    let _ = data_w.close().await;
    let _ = error_w.close().await;
}

/// Serves port-forward of `ports` on an upgraded WebSocket.
pub(crate) async fn serve_ws<S>(
    ws: WebSocketStream<S>,
    proto: WsProtocol,
    pod: String,
    ports: Vec<u16>,
    runtime: Arc<dyn StreamRuntime>,
    limits: Limits,
    cancel: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Activity::new();
    activity.spawn_watchdog(limits.idle, cancel.clone());
    let (mux, mut inbounds) = WsMux::start(ws, proto, ports.len() * 2, activity, cancel.clone());
    let mut jobs = Vec::new();
    for (i, &port) in ports.iter().enumerate() {
        // The server allows at most 127 ports: both channel numbers fit a byte.
        let (Ok(d), Ok(e)) = (u8::try_from(2 * i), u8::try_from(2 * i + 1)) else {
            break;
        };
        let mut data: BoxChannelWriter = Box::new(mux.writer(d));
        let mut error: BoxChannelWriter = Box::new(mux.writer(e));
        let prefix = Bytes::copy_from_slice(&port.to_le_bytes());
        if data.write(prefix.clone()).await.is_err() || error.write(prefix).await.is_err() {
            return;
        }
        let Some(inbound) = inbounds[d as usize].take() else {
            continue;
        };
        let (runtime, pod, cancel) = (runtime.clone(), pod.clone(), cancel.clone());
        jobs.push(async move {
            forward(runtime, &pod, port, inbound, &mut data, &mut error, &cancel).await;
        });
    }
    drop(inbounds);
    futures::future::join_all(jobs).await;
    if !cancel.is_cancelled() {
        mux.close().await;
    }
}

//! The HTTP side: binds the listener, hands out URLs, checks tokens and
//! upgrades each request to SPDY/3.1 or WebSocket before handing the
//! connection to the exec/attach or port-forward code.
//!
//! Routes (GET or POST, as kubelet's server): `/exec/<token>`,
//! `/attach/<token>`, `/portforward/<token>`. An unknown, used or expired
//! token is a 404; the token is consumed before the upgrade is checked, so a
//! failed handshake needs a new URL (kubelet behaves the same).

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use berth_proto::v1::{AttachRequest, ExecRequest, PortForwardRequest};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, CONNECTION, UPGRADE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use super::remotecommand::{Command, RemoteCommand};
use super::status::{
    negotiate, SPDY_PORT_FORWARD_PROTOCOLS, SPDY_REMOTE_COMMAND_PROTOCOLS,
    WS_PORT_FORWARD_PROTOCOLS, WS_REMOTE_COMMAND_PROTOCOLS,
};
use super::tokens::{self, Cached, TokenCache};
use super::websocket::WsProtocol;
use super::{
    portforward, remotecommand_spdy, remotecommand_ws, tls, Limits, StreamRuntime, StreamingConfig,
};
use crate::error::{Error, Result};

/// Header carrying the Kubernetes stream protocol on SPDY upgrades.
pub const STREAM_PROTOCOL_HEADER: &str = "x-stream-protocol-version";
/// Header listing the server's protocols when negotiation fails.
pub const ACCEPTED_PROTOCOLS_HEADER: &str = "x-accepted-stream-protocol-versions";

struct State {
    tokens: TokenCache,
    runtime: Arc<dyn StreamRuntime>,
    limits: Limits,
    shutdown: CancellationToken,
}

/// The running streaming server. Dropping it stops the listener and ends
/// every open session.
pub struct StreamingServer {
    addr: SocketAddr,
    base_url: String,
    state: Arc<State>,
}

// By hand: it holds handles (tasks, streams, callbacks, stores) with no useful
// Debug of their own.
impl std::fmt::Debug for StreamingServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingServer").finish_non_exhaustive()
    }
}

impl StreamingServer {
    /// Binds `cfg.address:cfg.port` and starts serving.
    pub async fn start(
        cfg: &StreamingConfig,
        runtime: Arc<dyn StreamRuntime>,
    ) -> Result<StreamingServer> {
        let tls = match (&cfg.tls_cert, &cfg.tls_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(TlsAcceptor::from(tls::server_config(cert, key)?)),
            _ => {
                return Err(Error::InvalidArgument(
                    "streaming.tls_cert and streaming.tls_key: set both for HTTPS, or neither"
                        .into(),
                ))
            }
        };
        let ip: IpAddr = cfg.address.parse().map_err(|_| {
            Error::InvalidArgument(format!(
                "streaming.address: {:?} is not an IP address",
                cfg.address
            ))
        })?;
        if cfg.idle_timeout_secs == 0 || cfg.token_ttl_secs == 0 {
            return Err(Error::InvalidArgument(
                "streaming.idle_timeout_secs and streaming.token_ttl_secs must be positive".into(),
            ));
        }
        let listener = TcpListener::bind(SocketAddr::new(ip, cfg.port))
            .await
            .map_err(|e| {
                Error::Internal(format!("streaming: bind {}:{}: {e}", cfg.address, cfg.port))
            })?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Internal(format!("streaming: local address: {e}")))?;
        // A wildcard bind is reachable on loopback; kubelet runs on the same node.
        let url_ip = match addr.ip() {
            IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            other => other,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let base_url = format!("{scheme}://{}", SocketAddr::new(url_ip, addr.port()));
        let state = Arc::new(State {
            tokens: TokenCache::new(Duration::from_secs(cfg.token_ttl_secs)),
            runtime,
            limits: Limits {
                idle: Duration::from_secs(cfg.idle_timeout_secs),
                stream_creation: Duration::from_secs(cfg.stream_creation_timeout_secs.max(1)),
            },
            shutdown: CancellationToken::new(),
        });
        tokio::spawn(accept_loop(listener, tls, state.clone()));
        tracing::info!(%addr, %scheme, "streaming server listening");
        Ok(StreamingServer {
            addr,
            base_url,
            state,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://host:port` (`https://` with TLS), the prefix of every URL handed out.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn url(&self, kind: &str, req: Cached) -> Result<String> {
        let token = self.state.tokens.insert(req)?;
        Ok(format!("{}/{kind}/{token}", self.base_url))
    }

    /// Validates `req` and returns the single-use URL for the client (CRI `Exec`).
    pub fn exec_url(&self, req: &ExecRequest) -> Result<String> {
        self.url("exec", tokens::exec_request(req)?)
    }

    /// Validates `req` and returns the single-use URL for the client (CRI `Attach`).
    pub fn attach_url(&self, req: &AttachRequest) -> Result<String> {
        self.url("attach", tokens::attach_request(req)?)
    }

    /// Validates `req` and returns the single-use URL for the client (CRI `PortForward`).
    pub fn port_forward_url(&self, req: &PortForwardRequest) -> Result<String> {
        self.url("portforward", tokens::port_forward_request(req)?)
    }

    /// Stops accepting connections and ends every open session.
    pub fn shutdown(&self) {
        self.state.shutdown.cancel();
    }
}

impl Drop for StreamingServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Longest a client may take over the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, state: Arc<State>) {
    loop {
        let conn = tokio::select! {
            c = listener.accept() => c,
            _ = state.shutdown.cancelled() => return,
        };
        let stream = match conn {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of fds and the like: back off instead of spinning.
                tracing::warn!(error = %e, "streaming: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let st = state.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let Some(tls) = tls else {
                return serve_http(stream, st).await;
            };
            // The handshake runs on the connection's own task, so a slow or
            // silent client holds up nobody else; a plain-HTTP client fails it.
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                Ok(Ok(stream)) => serve_http(stream, st).await,
                Ok(Err(e)) => tracing::debug!(error = %e, "streaming: TLS handshake failed"),
                Err(_) => tracing::debug!("streaming: TLS handshake timed out"),
            }
        });
    }
}

async fn serve_http<IO>(io: IO, state: Arc<State>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let svc = service_fn(move |req| handle(state.clone(), req));
    let conn = http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "streaming: http connection ended");
    }
}

type Reply = Response<Full<Bytes>>;

fn reply(code: StatusCode, msg: impl Into<String>) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(msg.into() + "\n")));
    *r.status_mut() = code;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn header_values<'a>(h: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    h.get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect()
}

fn has_token(h: &HeaderMap, name: hyper::header::HeaderName, token: &str) -> bool {
    h.get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Exec,
    Attach,
    PortForward,
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> std::result::Result<Reply, Infallible> {
    Ok(route(state, req).await)
}

async fn route(state: Arc<State>, req: Request<Incoming>) -> Reply {
    let path = req.uri().path();
    let (route, token) = if let Some(t) = path.strip_prefix("/exec/") {
        (Route::Exec, t)
    } else if let Some(t) = path.strip_prefix("/attach/") {
        (Route::Attach, t)
    } else if let Some(t) = path.strip_prefix("/portforward/") {
        (Route::PortForward, t)
    } else {
        return reply(StatusCode::NOT_FOUND, "404 page not found");
    };
    if req.method() != Method::GET && req.method() != Method::POST {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    }
    let Some(cached) = state.tokens.consume(token) else {
        return reply(StatusCode::NOT_FOUND, "404 page not found");
    };
    let matches = matches!(
        (route, &cached),
        (
            Route::Exec,
            Cached::RemoteCommand(RemoteCommand {
                command: Command::Exec { .. },
                ..
            })
        ) | (
            Route::Attach,
            Cached::RemoteCommand(RemoteCommand {
                command: Command::Attach { .. },
                ..
            })
        ) | (Route::PortForward, Cached::PortForward { .. })
    );
    if !matches {
        return reply(
            StatusCode::BAD_REQUEST,
            "token was issued for a different request type",
        );
    }
    let h = req.headers();
    let websocket = has_token(h, CONNECTION, "upgrade") && has_token(h, UPGRADE, "websocket");
    if websocket {
        upgrade_websocket(state, req, cached)
    } else {
        upgrade_spdy(state, req, cached)
    }
}

fn upgrade_spdy(state: Arc<State>, mut req: Request<Incoming>, cached: Cached) -> Reply {
    let h = req.headers();
    if !(has_token(h, CONNECTION, "upgrade") && has_token(h, UPGRADE, "spdy/3.1")) {
        return reply(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: missing upgrade headers in request (want Connection: Upgrade, Upgrade: SPDY/3.1 or websocket)",
        );
    }
    let supported = match cached {
        Cached::RemoteCommand(_) => SPDY_REMOTE_COMMAND_PROTOCOLS,
        Cached::PortForward { .. } => SPDY_PORT_FORWARD_PROTOCOLS,
    };
    let offered = header_values(h, STREAM_PROTOCOL_HEADER);
    if offered.is_empty() {
        return reply(
            StatusCode::BAD_REQUEST,
            format!("unable to upgrade: {STREAM_PROTOCOL_HEADER} is required"),
        );
    }
    let Some(protocol) = negotiate(offered.iter().copied(), supported) else {
        let mut r = reply(
            StatusCode::FORBIDDEN,
            format!(
                "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server accepts {supported:?}"
            ),
        );
        for p in supported {
            r.headers_mut()
                .append(ACCEPTED_PROTOCOLS_HEADER, HeaderValue::from_static(p));
        }
        return r;
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let cancel = state.shutdown.child_token();
    tokio::spawn(async move {
        let io = match on_upgrade.await {
            Ok(u) => TokioIo::new(u),
            Err(e) => {
                tracing::debug!(error = %e, "streaming: spdy upgrade failed");
                return;
            }
        };
        let (runtime, limits) = (state.runtime.clone(), state.limits);
        match cached {
            Cached::RemoteCommand(rc) => {
                remotecommand_spdy::serve(io, protocol, rc, runtime, limits, cancel).await
            }
            Cached::PortForward { pod_sandbox_id, .. } => {
                portforward::serve_spdy(io, pod_sandbox_id, runtime, limits, cancel).await
            }
        }
    });
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let hm = r.headers_mut();
    hm.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    hm.insert(UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    hm.insert(STREAM_PROTOCOL_HEADER, HeaderValue::from_static(protocol));
    r
}

fn upgrade_websocket(state: Arc<State>, mut req: Request<Incoming>, cached: Cached) -> Reply {
    let h = req.headers();
    let Some(key) = h.get("sec-websocket-key").map(|k| k.as_bytes().to_vec()) else {
        return reply(
            StatusCode::BAD_REQUEST,
            "websocket: Sec-WebSocket-Key is required",
        );
    };
    if h.get("sec-websocket-version").map(|v| v.as_bytes()) != Some(b"13") {
        let mut r = reply(
            StatusCode::BAD_REQUEST,
            "websocket: only version 13 is supported",
        );
        r.headers_mut()
            .insert("sec-websocket-version", HeaderValue::from_static("13"));
        return r;
    }
    let supported = match cached {
        Cached::RemoteCommand(_) => WS_REMOTE_COMMAND_PROTOCOLS,
        Cached::PortForward { .. } => WS_PORT_FORWARD_PROTOCOLS,
    };
    let offered = header_values(h, "sec-websocket-protocol");
    let protocol = if offered.iter().all(|o| o.trim().is_empty()) {
        // No subprotocol: the original binary channel protocol.
        ""
    } else {
        match negotiate(offered.iter().copied(), supported) {
            Some(p) => p,
            None => {
                return reply(
                    StatusCode::BAD_REQUEST,
                    format!(
                    "requested protocol(s) are not supported: {offered:?}; supports {supported:?}"
                ),
                )
            }
        }
    };
    if let Cached::PortForward { ports, .. } = &cached {
        // Two channels per port, numbered by one byte.
        if ports.is_empty() || ports.len() > 127 {
            return reply(
                StatusCode::BAD_REQUEST,
                "port: a websocket port-forward needs between 1 and 127 ports in the PortForward request",
            );
        }
    }
    let accept = derive_accept_key(&key);
    let on_upgrade = hyper::upgrade::on(&mut req);
    let cancel = state.shutdown.child_token();
    let proto = WsProtocol::from_name(protocol);
    tokio::spawn(async move {
        let io = match on_upgrade.await {
            Ok(u) => TokioIo::new(u),
            Err(e) => {
                tracing::debug!(error = %e, "streaming: websocket upgrade failed");
                return;
            }
        };
        let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
        let (runtime, limits) = (state.runtime.clone(), state.limits);
        match cached {
            Cached::RemoteCommand(rc) => {
                remotecommand_ws::serve(ws, proto, rc, runtime, limits, cancel).await
            }
            Cached::PortForward {
                pod_sandbox_id,
                ports,
            } => {
                portforward::serve_ws(ws, proto, pod_sandbox_id, ports, runtime, limits, cancel)
                    .await
            }
        }
    });
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let hm = r.headers_mut();
    hm.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    hm.insert(UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        hm.insert("sec-websocket-accept", v);
    }
    if !protocol.is_empty() {
        hm.insert("sec-websocket-protocol", HeaderValue::from_static(protocol));
    }
    r
}

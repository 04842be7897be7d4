//! The metrics endpoint: plain HTTP/1.1 on hyper (already in berthd for the
//! streaming server). `GET /metrics` answers in the Prometheus text format,
//! or OpenMetrics when the scraper's `Accept` asks for it (Prometheus does);
//! `GET /healthz` answers 200 while the CRI server takes calls and 503 while
//! it starts or drains, for probes and load balancers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::{global, Health};
use crate::error::{Error, Result};

/// OpenMetrics 1.0 text, as its spec names it.
const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// A scrape connection that sends nothing for this long is closed.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The running endpoint; stops when dropped.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsServer {
    /// The bound address (the real port when the config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Where the endpoint of this process listens, once it does.
static SERVED_AT: std::sync::OnceLock<SocketAddr> = std::sync::OnceLock::new();

/// The address `/metrics` is served on, `None` when the endpoint is off.
pub fn served_at() -> Option<SocketAddr> {
    SERVED_AT.get().copied()
}

/// Starts the endpoint `cfg` asks for, if any.
pub async fn start(cfg: &super::MetricsConfig) -> Result<Option<MetricsServer>> {
    if cfg.address.is_empty() {
        return Ok(None);
    }
    let server = serve(&cfg.address).await?;
    let _ = SERVED_AT.set(server.local_addr());
    tracing::info!(address = %server.local_addr(), "serving metrics on /metrics and /healthz");
    Ok(Some(server))
}

/// Binds `address` and serves `/metrics` and `/healthz` on it until the
/// returned server is dropped.
pub async fn serve(address: &str) -> Result<MetricsServer> {
    let listener = TcpListener::bind(address).await.map_err(|e| {
        Error::InvalidArgument(format!("metrics.address {address:?}: cannot listen: {e}"))
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Internal(format!("metrics listener address: {e}")))?;
    let task = tokio::spawn(accept_loop(listener));
    Ok(MetricsServer { addr, task })
}

async fn accept_loop(listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            let conn = http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service_fn(handle));
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "metrics: connection ended");
            }
        });
    }
}

async fn handle(req: Request<Incoming>) -> std::result::Result<Response<Full<Bytes>>, Infallible> {
    Ok(respond(req.method(), req.uri().path(), req.headers().get(ACCEPT)).await)
}

async fn respond(
    method: &Method,
    path: &str,
    accept: Option<&HeaderValue>,
) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "only GET\n".into(),
        );
    }
    match path {
        "/metrics" => {
            let open = wants_openmetrics(accept);
            // Encoding reads monitor state files and the image table.
            let body = tokio::task::spawn_blocking(move || {
                if open {
                    global().encode_openmetrics()
                } else {
                    global().encode_text()
                }
            })
            .await;
            match body {
                Ok(b) if open => reply(StatusCode::OK, OPENMETRICS_CONTENT_TYPE, b),
                Ok(b) => reply(
                    StatusCode::OK,
                    prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                    b,
                ),
                Err(e) => reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain; charset=utf-8",
                    format!("encoding metrics failed: {e}\n"),
                ),
            }
        }
        "/healthz" => {
            let (code, msg) = match global().health() {
                Health::Serving => (StatusCode::OK, "ok\n"),
                Health::Starting => (StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
                Health::Draining => (StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
            };
            reply(code, "text/plain; charset=utf-8", msg.into())
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: try /metrics or /healthz\n".into(),
        ),
    }
}

/// Whether an `Accept` header prefers OpenMetrics: any entry naming
/// `application/openmetrics-text` with a non-zero quality. Prometheus lists it
/// first; curl and older scrapers send `*/*` or `text/plain` and get 0.0.4.
fn wants_openmetrics(accept: Option<&HeaderValue>) -> bool {
    let Some(accept) = accept.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    accept.split(',').any(|entry| {
        let mut parts = entry.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        let q_zero = parts.any(|p| {
            p.strip_prefix("q=")
                .and_then(|q| q.parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        media.eq_ignore_ascii_case("application/openmetrics-text") && !q_zero
    })
}

fn reply(code: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn healthz_is_200_only_while_serving() {
        let g = global();
        for (h, code) in [
            (Health::Starting, StatusCode::SERVICE_UNAVAILABLE),
            (Health::Serving, StatusCode::OK),
            (Health::Draining, StatusCode::SERVICE_UNAVAILABLE),
        ] {
            g.set_health(h);
            assert_eq!(
                respond(&Method::GET, "/healthz", None).await.status(),
                code,
                "{h:?}"
            );
        }
        g.set_health(Health::Starting);
        assert_eq!(
            respond(&Method::POST, "/healthz", None).await.status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            respond(&Method::GET, "/", None).await.status(),
            StatusCode::NOT_FOUND
        );
    }

    #[tokio::test]
    async fn metrics_content_type_follows_accept() {
        let om = HeaderValue::from_static("application/openmetrics-text;version=1.0.0");
        let r = respond(&Method::GET, "/metrics", Some(&om)).await;
        assert_eq!(r.headers()[CONTENT_TYPE], OPENMETRICS_CONTENT_TYPE);
        let r = respond(&Method::GET, "/metrics", None).await;
        assert_eq!(
            r.headers()[CONTENT_TYPE],
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE
        );
    }

    #[test]
    fn openmetrics_only_when_asked_for() {
        let h = |s: &'static str| Some(HeaderValue::from_static(s));
        assert!(wants_openmetrics(h("application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2").as_ref()));
        assert!(wants_openmetrics(
            h("application/openmetrics-text").as_ref()
        ));
        assert!(!wants_openmetrics(h("text/plain;version=0.0.4").as_ref()));
        assert!(!wants_openmetrics(h("*/*").as_ref()));
        assert!(!wants_openmetrics(
            h("application/openmetrics-text;q=0,text/plain").as_ref()
        ));
        assert!(!wants_openmetrics(None));
    }
}

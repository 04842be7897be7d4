//! The client side of the streaming protocols: what kubectl and crictl speak
//! to a URL returned by the CRI `Exec`, `Attach` and `PortForward` RPCs.
//!
//! * [`remote_command`] runs an exec or attach over SPDY/3.1
//!   (`v4.channel.k8s.io`, one SPDY stream per stdio channel named by its
//!   `streamType` header) or WebSocket (`v5.channel.k8s.io`, falling back to
//!   `v4`; one channel byte in front of every message), streaming between
//!   caller-supplied readers/writers and the remote process, and turns the
//!   Status on the error channel into an exit code. [`run_and_collect`] is the
//!   buffering convenience for tests.
//! * [`port_forward`] connects one local byte stream to a pod port over SPDY
//!   (`portforward.k8s.io`) or WebSocket.
//! * `https://` URLs (berthd with `streaming.tls_cert`) are dialled over TLS,
//!   trusting the system CA bundle or, with the `_trusting` variants, a given
//!   CA file ([`TlsTrust`]).
//!
//! The frame codec is the server's ([`crate::streaming::spdy::frame`]); a
//! client differs only in who opens streams (the client, odd ids). Like the
//! Go `spdystream` library the client never sends WINDOW_UPDATE, so the
//! server does not enforce send windows on it, and it sends without windows.

mod exec;
mod portforward;
mod spdy;
mod upgrade;
mod ws;

pub use exec::{remote_command, remote_command_trusting, run_and_collect, Collected, RemoteStdio};
pub use portforward::{port_forward, port_forward_trusting};

pub use crate::streaming::tls::TlsTrust;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_tungstenite::tungstenite::http::Uri;

use crate::error::{Error, Result};

/// A dialled connection: plain TCP, or TLS over it for `https://` URLs.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}
pub(crate) type BoxIo = Box<dyn Io>;

/// Which protocol family to speak to the streaming server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// HTTP/1.1 Upgrade to SPDY/3.1 (kubectl's historic default).
    Spdy,
    /// HTTP/1.1 Upgrade to WebSocket (kubectl's default since 1.31).
    WebSocket,
}

impl std::str::FromStr for Transport {
    type Err = Error;

    fn from_str(s: &str) -> Result<Transport> {
        match s.to_ascii_lowercase().as_str() {
            "spdy" => Ok(Transport::Spdy),
            "websocket" | "ws" => Ok(Transport::WebSocket),
            other => Err(Error::InvalidArgument(format!(
                "transport: {other:?} is neither spdy nor websocket"
            ))),
        }
    }
}

/// A streaming URL split into what a raw HTTP client needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// `host:port`, as `Host:` and for dialling (IPv6 in brackets).
    pub authority: String,
    /// Path and query.
    pub path: String,
    /// For `https://`: whom to trust, and the host the certificate must name.
    pub tls: Option<(TlsTrust, String)>,
}

impl Target {
    /// `url` with the system CA bundle trusted for `https://`.
    #[cfg(test)]
    pub(crate) fn parse(url: &str) -> Result<Target> {
        Self::parse_trusting(url, &TlsTrust::System)
    }

    pub(crate) fn parse_trusting(url: &str, trust: &TlsTrust) -> Result<Target> {
        let bad = |why: &str| Error::InvalidArgument(format!("streaming url {url:?}: {why}"));
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        let (https, default_port) = match uri.scheme_str() {
            Some("http") => (false, 80),
            Some("https") => (true, 443),
            _ => return Err(bad("scheme must be http or https")),
        };
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        let tls = https.then(|| {
            let host = authority.host();
            let host = host.strip_prefix('[').unwrap_or(host);
            let host = host.strip_suffix(']').unwrap_or(host);
            (trust.clone(), host.to_string())
        });
        let authority = if authority.port().is_some() {
            authority.as_str().to_string()
        } else {
            format!("{}:{default_port}", authority.as_str())
        };
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        Ok(Target {
            authority,
            path,
            tls,
        })
    }

    async fn dial(&self) -> Result<BoxIo> {
        let s = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|e| {
                Error::Unavailable(format!("streaming: connect {}: {e}", self.authority))
            })?;
        // Interactive keystrokes must not wait for Nagle.
        let _ = s.set_nodelay(true);
        let Some((trust, host)) = &self.tls else {
            return Ok(Box::new(s));
        };
        let name = ServerName::try_from(host.clone()).map_err(|e| {
            Error::InvalidArgument(format!("streaming url: host {host:?} for TLS: {e}"))
        })?;
        let connector = tokio_rustls::TlsConnector::from(trust.client_config()?);
        let tls = connector.connect(name, s).await.map_err(|e| {
            Error::Unavailable(format!(
                "streaming: TLS handshake with {}: {e}",
                self.authority
            ))
        })?;
        Ok(Box::new(tls))
    }
}

/// Turns the error channel's content into an exit code: a `v4` Status
/// (`Success` → 0, `NonZeroExitCode` → the code in its cause), or for older
/// protocols nothing (success) or a plain message (failure).
pub fn exit_code_from_status(payload: &[u8]) -> Result<i32> {
    let text = String::from_utf8_lossy(payload);
    if text.trim().is_empty() {
        return Ok(0);
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(payload) else {
        return Err(Error::Internal(format!("remote command: {}", text.trim())));
    };
    if v["status"] == "Success" {
        return Ok(0);
    }
    let message = v["message"].as_str().unwrap_or("remote command failed");
    if v["reason"] == "NonZeroExitCode" {
        let code = v["details"]["causes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["reason"] == "ExitCode")
            .and_then(|c| c["message"].as_str())
            .and_then(|m| m.parse::<i32>().ok());
        if let Some(code) = code {
            return Ok(code);
        }
    }
    Err(Error::Internal(message.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streaming::status::Outcome;

    #[test]
    fn status_becomes_exit_code() {
        assert_eq!(
            exit_code_from_status(&Outcome::Success.to_json()).unwrap(),
            0
        );
        assert_eq!(exit_code_from_status(b"").unwrap(), 0);
        let failed = Outcome::ExitCode {
            cmd: vec!["sh".into()],
            code: 3,
        };
        assert_eq!(exit_code_from_status(&failed.to_json()).unwrap(), 3);
        let e =
            exit_code_from_status(&Outcome::Internal("no such file".into()).to_json()).unwrap_err();
        assert!(e.to_string().contains("no such file"), "{e}");
        // Pre-v4 protocols: the bare message.
        let e = exit_code_from_status(&failed.to_text().unwrap()).unwrap_err();
        assert!(e.to_string().contains("exit code 3"), "{e}");
    }

    #[test]
    fn urls_split_into_authority_and_path() {
        let t = Target::parse("http://127.0.0.1:4321/exec/abc").unwrap();
        assert_eq!(t.authority, "127.0.0.1:4321");
        assert_eq!(t.path, "/exec/abc");
        let t = Target::parse("http://[::1]:99/portforward/x?ports=80").unwrap();
        assert_eq!(t.authority, "[::1]:99");
        assert_eq!(t.path, "/portforward/x?ports=80");
        assert_eq!(
            Target::parse("http://node/exec/t").unwrap().authority,
            "node:80"
        );
        let t = Target::parse("https://[::1]/exec/t").unwrap();
        assert_eq!(t.authority, "[::1]:443");
        assert_eq!(t.tls, Some((TlsTrust::System, "::1".to_string())));
        let ca = TlsTrust::CaFile("/etc/berth/ca.pem".into());
        let t = Target::parse_trusting("https://node-1:10010/exec/t", &ca).unwrap();
        assert_eq!(t.tls, Some((ca, "node-1".to_string())));
        assert_eq!(Target::parse("http://h:1/exec/t").unwrap().tls, None);
        Target::parse("ftp://h/x").unwrap_err();
        "spdy".parse::<Transport>().unwrap();
        "bogus".parse::<Transport>().unwrap_err();
    }
}

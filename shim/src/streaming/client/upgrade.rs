//! The HTTP/1.1 request that turns a TCP connection into a SPDY/3.1 session:
//! `Connection: Upgrade`, `Upgrade: SPDY/3.1` and one
//! `X-Stream-Protocol-Version` per offered protocol; the server answers
//! `101 Switching Protocols` naming the protocol it picked. Written by hand
//! because after the 101 the same socket carries SPDY frames, and bytes the
//! server sent right behind the headers must not be lost.

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{BoxIo, Target};
use crate::error::{Error, Result};

/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// An upgraded connection: the socket and the bytes already read past the
/// response head.
pub(crate) struct Upgraded {
    pub io: BoxIo,
    pub leftover: BytesMut,
}

/// The request head for `target` offering `protocols`.
pub(crate) fn request(target: &Target, protocols: &[&str]) -> String {
    let mut r = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nContent-Length: 0\r\n",
        target.path, target.authority
    );
    for p in protocols {
        r.push_str(&format!("X-Stream-Protocol-Version: {p}\r\n"));
    }
    r.push_str("\r\n");
    r
}

/// A parsed response head.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Head {
    pub status: u16,
    /// Header names lower-case.
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a response head (everything before the blank line).
pub(crate) fn parse_head(head: &str) -> Result<Head> {
    let bad = || Error::Internal(format!("streaming: malformed HTTP response {head:?}"));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(bad)?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(bad());
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(bad)?;
    let headers = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Head { status, headers })
}

/// Maps a refused upgrade to the crate error a caller can act on.
pub(crate) fn refused(what: &str, status: u16, body: &str) -> Error {
    let msg = format!(
        "streaming: {what}: server answered {status}: {}",
        body.trim()
    );
    match status {
        404 => Error::NotFound(msg),
        400 => Error::InvalidArgument(msg),
        403 => Error::PermissionDenied(msg),
        _ => Error::Internal(msg),
    }
}

/// Dials `target` and upgrades to SPDY/3.1 offering `protocols`.
pub(crate) async fn spdy(target: &Target, protocols: &[&str]) -> Result<Upgraded> {
    let mut io = target.dial().await?;
    let io_err =
        |e: std::io::Error| Error::Unavailable(format!("streaming: {}: {e}", target.authority));
    io.write_all(request(target, protocols).as_bytes())
        .await
        .map_err(io_err)?;
    let mut buf = BytesMut::with_capacity(4096);
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_HEAD {
            return Err(Error::Internal(
                "streaming: HTTP response head too large".into(),
            ));
        }
        if io.read_buf(&mut buf).await.map_err(io_err)? == 0 {
            return Err(Error::Unavailable(format!(
                "streaming: {} closed the connection during the upgrade",
                target.authority
            )));
        }
    };
    let head = parse_head(&String::from_utf8_lossy(&buf[..end]))?;
    let mut leftover = buf.split_off(end + 4);
    if head.status != 101 {
        // Read a short body for the message; the server closes or sends Content-Length.
        let want = head
            .header("content-length")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0)
            .min(MAX_HEAD);
        while leftover.len() < want {
            match io.read_buf(&mut leftover).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        return Err(refused(
            &target.path,
            head.status,
            &String::from_utf8_lossy(&leftover),
        ));
    }
    let upgrade_ok = head
        .header("upgrade")
        .is_some_and(|u| u.eq_ignore_ascii_case("spdy/3.1"));
    if !upgrade_ok {
        return Err(Error::Internal(format!(
            "streaming: upgrade answered without Upgrade: SPDY/3.1 ({:?})",
            head.header("upgrade")
        )));
    }
    let protocol = head
        .header("x-stream-protocol-version")
        .unwrap_or_default()
        .to_string();
    if !protocols.contains(&protocol.as_str()) {
        return Err(Error::Internal(format!(
            "streaming: server picked stream protocol {protocol:?}, not one of {protocols:?}"
        )));
    }
    Ok(Upgraded { io, leftover })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_offers_every_protocol() {
        let t = Target {
            authority: "127.0.0.1:1".into(),
            path: "/exec/tok".into(),
            tls: None,
        };
        let r = request(&t, &["v4.channel.k8s.io", "v3.channel.k8s.io"]);
        assert!(r.starts_with("POST /exec/tok HTTP/1.1\r\nHost: 127.0.0.1:1\r\n"));
        assert!(r.contains("Upgrade: SPDY/3.1\r\n"));
        assert!(r.contains("X-Stream-Protocol-Version: v4.channel.k8s.io\r\nX-Stream-Protocol-Version: v3.channel.k8s.io\r\n\r\n"));
    }

    #[test]
    fn response_heads_parse() {
        let h = parse_head(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nX-Stream-Protocol-Version: v4.channel.k8s.io",
        )
        .unwrap();
        assert_eq!(h.status, 101);
        assert_eq!(
            h.header("x-stream-protocol-version"),
            Some("v4.channel.k8s.io")
        );
        parse_head("garbage").unwrap_err();
        assert!(matches!(
            refused("/exec/x", 404, "404 page not found\n"),
            Error::NotFound(_)
        ));
    }
}

//! Single-use, expiring tokens that stand for a validated CRI request between
//! the RPC that returns the URL and the client connecting to it (kubelet's
//! request cache). A token is 16 random bytes, URL-safe base64 encoded.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use berth_proto::v1::{AttachRequest, ExecRequest, PortForwardRequest};

use super::remotecommand::{Command, RemoteCommand, StdioOptions};
use crate::error::{Error, Result};

/// Upper bound of outstanding tokens, so a client calling Exec in a loop
/// cannot grow the cache without limit.
pub const MAX_TOKENS: usize = 10_000;

/// A request waiting for its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cached {
    /// Exec or attach.
    RemoteCommand(RemoteCommand),
    /// Port-forward to a pod's network namespace.
    PortForward {
        /// Pod sandbox id.
        pod_sandbox_id: String,
        /// Ports named in the request (the WebSocket protocol forwards exactly these).
        ports: Vec<u16>,
    },
}

/// The token cache.
#[derive(Debug)]
pub struct TokenCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Cached)>>,
}

impl TokenCache {
    /// A cache whose tokens live for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        TokenCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Stores `req` under a fresh random token.
    pub fn insert(&self, req: Cached) -> Result<String> {
        let mut raw = [0u8; 16];
        getrandom::fill(&mut raw)
            .map_err(|e| Error::Internal(format!("streaming token: random source: {e}")))?;
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        entries.retain(|_, (expires, _)| *expires > now);
        if entries.len() >= MAX_TOKENS {
            return Err(Error::Unavailable(format!(
                "streaming: {MAX_TOKENS} requests already waiting for their client"
            )));
        }
        entries.insert(token.clone(), (now + self.ttl, req));
        Ok(token)
    }

    /// Takes the request for `token`: `None` if unknown, already used or expired.
    pub fn consume(&self, token: &str) -> Option<Cached> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (expires, req) = entries.remove(token)?;
        (expires > Instant::now()).then_some(req)
    }
}

fn check_stdio(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> Result<()> {
    if !(stdin || stdout || stderr) {
        return Err(Error::InvalidArgument(
            "one of stdin, stdout, or stderr must be set".into(),
        ));
    }
    if tty && stderr {
        return Err(Error::InvalidArgument(
            "stderr: tty and stderr cannot both be true (a terminal merges stderr into stdout)"
                .into(),
        ));
    }
    Ok(())
}

fn check_container_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::InvalidArgument(
            "container_id: must not be empty".into(),
        ));
    }
    Ok(())
}

/// Validates an `ExecRequest` as kubelet does.
pub fn exec_request(req: &ExecRequest) -> Result<Cached> {
    check_container_id(&req.container_id)?;
    if req.cmd.is_empty() {
        return Err(Error::InvalidArgument("cmd: must not be empty".into()));
    }
    check_stdio(req.stdin, req.stdout, req.stderr, req.tty)?;
    Ok(Cached::RemoteCommand(RemoteCommand {
        command: Command::Exec {
            container_id: req.container_id.clone(),
            cmd: req.cmd.clone(),
        },
        opts: StdioOptions {
            stdin: req.stdin,
            stdout: req.stdout,
            stderr: req.stderr,
            tty: req.tty,
        },
    }))
}

/// Validates an `AttachRequest` as kubelet does.
pub fn attach_request(req: &AttachRequest) -> Result<Cached> {
    check_container_id(&req.container_id)?;
    check_stdio(req.stdin, req.stdout, req.stderr, req.tty)?;
    Ok(Cached::RemoteCommand(RemoteCommand {
        command: Command::Attach {
            container_id: req.container_id.clone(),
        },
        opts: StdioOptions {
            stdin: req.stdin,
            stdout: req.stdout,
            stderr: req.stderr,
            tty: req.tty,
        },
    }))
}

/// Validates a `PortForwardRequest`.
pub fn port_forward_request(req: &PortForwardRequest) -> Result<Cached> {
    if req.pod_sandbox_id.is_empty() {
        return Err(Error::InvalidArgument(
            "pod_sandbox_id: must not be empty".into(),
        ));
    }
    let ports = req
        .port
        .iter()
        .map(|&p| {
            u16::try_from(p).ok().filter(|p| *p > 0).ok_or_else(|| {
                Error::InvalidArgument(format!("port: {p} is not a valid TCP port (1-65535)"))
            })
        })
        .collect::<Result<Vec<u16>>>()?;
    Ok(Cached::PortForward {
        pod_sandbox_id: req.pod_sandbox_id.clone(),
        ports,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> ExecRequest {
        ExecRequest {
            container_id: "c1".into(),
            cmd: vec!["sh".into()],
            tty,
            stdin,
            stdout,
            stderr,
            ..Default::default()
        }
    }

    #[test]
    fn tokens_are_single_use_and_unguessable() {
        let cache = TokenCache::new(Duration::from_secs(60));
        let req = exec_request(&exec(false, true, false, false)).unwrap();
        let t1 = cache.insert(req.clone()).unwrap();
        let t2 = cache.insert(req.clone()).unwrap();
        assert_ne!(t1, t2);
        assert_eq!(t1.len(), 22);
        assert_eq!(cache.consume(&t1), Some(req));
        assert_eq!(cache.consume(&t1), None);
        assert_eq!(cache.consume("nope"), None);
        assert!(cache.consume(&t2).is_some());
    }

    #[test]
    fn expired_tokens_are_refused() {
        let cache = TokenCache::new(Duration::from_millis(1));
        let t = cache
            .insert(exec_request(&exec(false, true, false, false)).unwrap())
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(cache.consume(&t), None);
    }

    #[test]
    fn stdio_validation_names_the_field() {
        let e = exec_request(&exec(false, false, false, false)).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)));
        assert!(e.to_string().contains("stdin"));
        let e = exec_request(&exec(true, true, true, true)).unwrap_err();
        assert!(e.to_string().starts_with("stderr"));
        let mut r = exec(true, true, false, true);
        r.cmd.clear();
        assert!(exec_request(&r).unwrap_err().to_string().starts_with("cmd"));
        r = exec(true, true, false, true);
        r.container_id.clear();
        assert!(exec_request(&r)
            .unwrap_err()
            .to_string()
            .starts_with("container_id"));
        let a = AttachRequest {
            container_id: "c".into(),
            tty: true,
            stderr: true,
            stdout: true,
            ..Default::default()
        };
        assert!(attach_request(&a)
            .unwrap_err()
            .to_string()
            .starts_with("stderr"));
    }

    #[test]
    fn port_forward_ports_must_be_tcp_ports() {
        let mut r = PortForwardRequest {
            pod_sandbox_id: "p".into(),
            port: vec![80, 65535],
        };
        assert_eq!(
            port_forward_request(&r).unwrap(),
            Cached::PortForward {
                pod_sandbox_id: "p".into(),
                ports: vec![80, 65535]
            }
        );
        for bad in [0, -1, 65536] {
            r.port = vec![bad];
            assert!(port_forward_request(&r)
                .unwrap_err()
                .to_string()
                .starts_with("port"));
        }
        r.pod_sandbox_id.clear();
        r.port = vec![80];
        port_forward_request(&r).unwrap_err();
    }
}

//! Port-forward's connection into a pod: `localhost:port` as seen from the
//! pod's network namespace.
//!
//! berthd runs tokio and must not switch namespaces on a runtime thread. The
//! network namespace is per thread, though, and a socket stays in the
//! namespace it was created in, so a dedicated short-lived std thread enters
//! the pod's namespace (`setns(CLONE_NEWNET)`, nix's safe wrapper), connects,
//! hands the socket back and exits; no thread ever returns to berthd's pools
//! with a foreign namespace, and nothing is forked.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sched::CloneFlags;
use tokio::net::TcpStream;

use crate::error::{Error, Result};

/// How long a connect inside the pod may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

fn connect_blocking(netns: &Path, port: u16) -> Result<std::net::TcpStream> {
    let ns = std::fs::File::open(netns).map_err(Error::io("open network namespace", netns))?;
    nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|e| {
        Error::Runtime(format!(
            "port-forward: enter network namespace {}: {e}",
            netns.display()
        ))
    })?;
    // `localhost` as kubelet and containerd dial it: IPv4 first, then IPv6.
    let mut last = None;
    for ip in [Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()] {
        match std::net::TcpStream::connect_timeout(&SocketAddr::new(ip, port), CONNECT_TIMEOUT) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(Error::Runtime(format!(
        "port-forward: connect to localhost:{port} in {}: {}",
        netns.display(),
        last.map(|e| e.to_string()).unwrap_or_default()
    )))
}

/// Opens a TCP connection to `localhost:port` inside the network namespace
/// pinned at `netns` (e.g. `/run/berth/ns/<pod>/net`).
pub async fn connect_in_netns(netns: impl Into<PathBuf>, port: u16) -> Result<TcpStream> {
    let netns = netns.into();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("berth-netns-dial".into())
        .spawn(move || {
            let _ = tx.send(connect_blocking(&netns, port));
        })
        .map_err(|e| Error::Internal(format!("port-forward: spawn dial thread: {e}")))?;
    let stream = rx
        .await
        .map_err(|_| Error::Internal("port-forward: dial thread died".into()))??;
    stream
        .set_nonblocking(true)
        .map_err(|e| Error::Internal(format!("port-forward: set non-blocking: {e}")))?;
    TcpStream::from_std(stream)
        .map_err(|e| Error::Internal(format!("port-forward: register socket: {e}")))
}

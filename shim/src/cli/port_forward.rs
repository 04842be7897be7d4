//! `berth port-forward [--address A] POD [LOCAL:]REMOTE...`: listens on the
//! local address(es) and forwards every accepted connection to the pod port,
//! each over its own PortForward URL (tokens are single use), as crictl does.
//! Runs until interrupted.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use berth_proto::v1::PortForwardRequest;
use clap::Args;
use tokio::net::{TcpListener, TcpStream};

use super::exec::parse_transport;
use super::pods::with_id;
use crate::client::CriClient;
use crate::error::{Error, Result};
use crate::streaming::client::{self, TlsTrust, Transport};

/// `berth port-forward`.
#[derive(Args, Debug)]
pub struct PortForwardArgs {
    /// Addresses to listen on (comma-separated IPs or `localhost`).
    #[arg(long, default_value = "localhost", value_delimiter = ',')]
    pub address: Vec<String>,
    /// Streaming protocol: spdy or websocket.
    #[arg(long, default_value = "spdy", value_parser = parse_transport)]
    pub transport: Transport,
    /// CA certificate(s) (PEM) to trust for an `https://` streaming URL;
    /// without it the system CA bundle is trusted.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// Pod sandbox id.
    pub id: String,
    /// `[LOCAL:]REMOTE` port pairs; LOCAL 0 or empty picks a free port.
    #[arg(required = true)]
    pub ports: Vec<String>,
}

/// A `[LOCAL:]REMOTE` mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// Port to listen on (0: any free port).
    pub local: u16,
    /// Port in the pod.
    pub remote: u16,
}

/// Parses `8080`, `9000:8080`, `:8080` or `0:8080` (kubectl's forms).
pub fn parse_mapping(s: &str) -> Result<Mapping> {
    let bad = |why: &str| Error::InvalidArgument(format!("port {s:?}: {why}"));
    let port = |p: &str| p.parse::<u16>().map_err(|_| bad("not a port number"));
    let (local, remote) = match s.split_once(':') {
        Some(("", r)) => (0, port(r)?),
        Some((l, r)) => (port(l)?, port(r)?),
        None => (port(s)?, port(s)?),
    };
    if remote == 0 {
        return Err(bad("the remote port must not be 0"));
    }
    Ok(Mapping { local, remote })
}

fn parse_address(a: &str) -> Result<IpAddr> {
    if a == "localhost" {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    a.parse().map_err(|_| {
        Error::InvalidArgument(format!("address: {a:?} is not an IP address or localhost"))
    })
}

/// Listens and forwards until Ctrl-C; returns 0.
pub async fn port_forward(cri: &mut CriClient, a: PortForwardArgs) -> Result<i32> {
    let mappings = a
        .ports
        .iter()
        .map(|p| parse_mapping(p))
        .collect::<Result<Vec<_>>>()?;
    let mut addresses = a
        .address
        .iter()
        .map(|s| parse_address(s))
        .collect::<Result<Vec<_>>>()?;
    addresses.dedup();
    // Check the pod up front so a typo fails now, not at the first connection.
    cri.runtime
        .port_forward(PortForwardRequest {
            pod_sandbox_id: a.id.clone(),
            port: mappings.iter().map(|m| i32::from(m.remote)).collect(),
        })
        .await
        .map_err(|e| with_id("port-forward to pod", &a.id, e))?;
    let mut tasks = tokio::task::JoinSet::new();
    for m in &mappings {
        for ip in &addresses {
            let addr = SocketAddr::new(*ip, m.local);
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| Error::Unavailable(format!("port-forward: listen on {addr}: {e}")))?;
            let bound = listener
                .local_addr()
                .map_err(|e| Error::Internal(format!("port-forward: local address: {e}")))?;
            println!("Forwarding from {bound} -> {}", m.remote);
            tasks.spawn(serve(
                listener,
                cri.clone(),
                a.id.clone(),
                m.remote,
                a.transport,
                TlsTrust::from_ca_file(a.tls_ca.clone()),
            ));
        }
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| Error::Internal(format!("wait for interrupt: {e}")))?;
    tasks.abort_all();
    Ok(0)
}

async fn serve(
    listener: TcpListener,
    cri: CriClient,
    pod: String,
    remote: u16,
    t: Transport,
    trust: TlsTrust,
) {
    loop {
        let conn = match listener.accept().await {
            Ok((c, _)) => c,
            Err(e) => {
                eprintln!("port-forward: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let mut cri = cri.clone();
        let pod = pod.clone();
        let trust = trust.clone();
        tokio::spawn(async move {
            println!("Handling connection for {remote}");
            if let Err(e) = forward_one(&mut cri, &pod, remote, t, &trust, conn).await {
                eprintln!("port-forward: {e}");
            }
        });
    }
}

async fn forward_one(
    cri: &mut CriClient,
    pod: &str,
    remote: u16,
    transport: Transport,
    trust: &TlsTrust,
    conn: TcpStream,
) -> Result<()> {
    let url = cri
        .runtime
        .port_forward(PortForwardRequest {
            pod_sandbox_id: pod.to_string(),
            port: vec![i32::from(remote)],
        })
        .await
        .map_err(|e| with_id("port-forward to pod", pod, e))?
        .into_inner()
        .url;
    client::port_forward_trusting(&url, transport, trust, remote, conn).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_parse_like_kubectl() {
        assert_eq!(
            parse_mapping("8080").unwrap(),
            Mapping {
                local: 8080,
                remote: 8080
            }
        );
        assert_eq!(
            parse_mapping("9000:80").unwrap(),
            Mapping {
                local: 9000,
                remote: 80
            }
        );
        assert_eq!(parse_mapping(":80").unwrap().local, 0);
        assert_eq!(parse_mapping("0:80").unwrap().local, 0);
        parse_mapping("80:0").unwrap_err();
        parse_mapping("http").unwrap_err();
        parse_mapping("70000").unwrap_err();
        assert_eq!(
            parse_address("localhost").unwrap(),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
        parse_address("::1").unwrap();
        parse_address("example.com").unwrap_err();
    }
}

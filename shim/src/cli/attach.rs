//! `berth attach [-i] [-t] ID`: joins a running container's main process
//! through the streaming server, as crictl does (Attach RPC, then the client).

use berth_proto::v1::AttachRequest;
use clap::Args;

use super::exec::{check_tty, parse_transport, stream};
use super::pods::with_id;
use crate::client::CriClient;
use crate::error::Result;
use crate::streaming::client::{TlsTrust, Transport};

/// `berth attach [-i] [-t] ID`.
#[derive(Args, Debug)]
pub struct AttachArgs {
    /// Send stdin to the container (it must have been created with stdin).
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// The container has a tty (must match how it was created).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Streaming protocol: spdy or websocket.
    #[arg(long, default_value = "spdy", value_parser = parse_transport)]
    pub transport: Transport,
    /// CA certificate(s) (PEM) to trust for an `https://` streaming URL;
    /// without it the system CA bundle is trusted.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// Container id.
    pub id: String,
}

/// Attaches until the container's process ends or the connection does.
pub async fn attach(cri: &mut CriClient, a: AttachArgs) -> Result<i32> {
    check_tty(a.stdin, a.tty)?;
    let url = cri
        .runtime
        .attach(AttachRequest {
            container_id: a.id.clone(),
            stdin: a.stdin,
            tty: a.tty,
            stdout: true,
            stderr: !a.tty,
            ..Default::default()
        })
        .await
        .map_err(|e| with_id("attach to container", &a.id, e))?
        .into_inner()
        .url;
    let trust = TlsTrust::from_ca_file(a.tls_ca);
    stream(&url, a.transport, &trust, a.stdin, a.tty).await
}

//! The streaming server behind the CRI `Exec`, `Attach` and `PortForward` RPCs.
//!
//! kubelet calls one of those RPCs, gets back a URL on this server
//! (`http://127.0.0.1:PORT/exec/<token>`), and proxies the client's upgraded
//! connection (kubectl, crictl, the API server) to it byte for byte. So this
//! module speaks exactly what Kubernetes clients speak:
//!
//! * remote command (exec, attach) over SPDY/3.1 with the `v4.channel.k8s.io`
//!   family of stream protocols, and over WebSocket with `v5.channel.k8s.io`,
//!   `v4.channel.k8s.io` and their base64 variants;
//! * port-forward over SPDY (`portforward.k8s.io`) and WebSocket
//!   (`v4.channel.k8s.io` port-forward framing).
//!
//! What a stream is connected to is the [`StreamRuntime`]'s business: the
//! server only moves bytes between the client and the [`ProcessIo`] or the
//! connection the runtime hands back. Tokens are single use and expire
//! ([`tokens`]); a connection that is idle for `idle_timeout_secs` is closed,
//! and closing a connection (either side) drops the process handle, which the
//! runtime must turn into killing the exec'd process.
//!
//! Wiring (berthd):
//!
//! ```text
//! let streaming = StreamingServer::start(&config.streaming, runtime).await?;  // at start-up
//! Exec:        check the container exists and runs, then
//!              Ok(ExecResponse { url: streaming.exec_url(&req)? })
//! Attach:      same with streaming.attach_url(&req)
//! PortForward: check the sandbox exists and is ready, then
//!              Ok(PortForwardResponse { url: streaming.port_forward_url(&req)? })
//! ```
//!
//! A real [`StreamRuntime`] builds on [`process::spawn_piped`] /
//! [`process::spawn_with_pty`] (for `berth-monitor exec`) and
//! [`netns::connect_in_netns`] (for port-forward).

pub mod channel;
pub mod client;
pub mod monitor_attach;
pub mod netns;
pub mod process;
pub mod remotecommand;
pub mod server;
pub mod spdy;
pub mod status;
pub mod tls;
pub mod tokens;
pub mod websocket;

mod activity;
mod portforward;
mod remotecommand_spdy;
mod remotecommand_ws;

/// Per-connection time limits (here, not in `server.rs`, so the protocol
/// handlers that the server calls need nothing from it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub idle: std::time::Duration,
    pub stream_creation: std::time::Duration,
}

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use crate::error::Result;

pub use server::StreamingServer;

/// The `[streaming]` section of the daemon config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct StreamingConfig {
    /// Address the streaming server binds to; loopback unless the operator opts in.
    pub address: String,
    /// TCP port; 0 picks an ephemeral port.
    pub port: u16,
    /// How long a URL returned by Exec/Attach/PortForward stays valid.
    pub token_ttl_secs: u64,
    /// A connection with no traffic for this long is closed (kubelet's
    /// `streamingConnectionIdleTimeout` defaults to 4h).
    pub idle_timeout_secs: u64,
    /// How long a client may take to open all the streams a session needs.
    pub stream_creation_timeout_secs: u64,
    /// PEM certificate chain for HTTPS (leaf first); with `tls_key` the
    /// server speaks only HTTPS and hands out `https://` URLs.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
}

impl Default for StreamingConfig {
    fn default() -> Self {
        StreamingConfig {
            address: "127.0.0.1".into(),
            port: 0,
            token_ttl_secs: 60,
            idle_timeout_secs: 4 * 60 * 60,
            stream_creation_timeout_secs: 30,
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// A terminal size as Kubernetes clients send it on the resize stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermSize {
    /// Columns.
    #[serde(rename = "Width")]
    pub width: u16,
    /// Rows.
    #[serde(rename = "Height")]
    pub height: u16,
}

/// Boxed reader of a process output.
pub type BoxReader = Box<dyn AsyncRead + Send + Unpin>;
/// Boxed writer of a process input.
pub type BoxWriter = Box<dyn AsyncWrite + Send + Unpin>;
/// Resolves to the exit code of an exec'd process (or when an attach ends).
pub type ExitFuture = Pin<Box<dyn Future<Output = Result<i32>> + Send>>;

/// The I/O of a process started by [`StreamRuntime::exec`] or joined by
/// [`StreamRuntime::attach`].
///
/// Contract for runtimes: dropping the `ProcessIo` (in particular `exit`)
/// before `exit` resolved means the client went away: an exec'd process must
/// then be killed, an attach only detached. `stdout` must reach EOF once the
/// process is gone (for a pty: the master returns EOF or EIO).
pub struct ProcessIo {
    /// The process's stdin; `None` when stdin was not requested.
    pub stdin: Option<BoxWriter>,
    /// The process's stdout, or the pty master's output when `tty`.
    pub stdout: Option<BoxReader>,
    /// The process's stderr; `None` with a tty (merged into stdout).
    pub stderr: Option<BoxReader>,
    /// Terminal resizes, applied by the runtime; `None` without a tty.
    pub resize: Option<mpsc::Sender<TermSize>>,
    /// The exit code of the process.
    pub exit: ExitFuture,
}

// By hand: it holds handles (tasks, streams, callbacks, stores) with no useful
// Debug of their own.
impl std::fmt::Debug for ProcessIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessIo").finish_non_exhaustive()
    }
}

/// A bidirectional byte stream (a TCP connection inside the pod's network namespace).
pub trait AsyncReadWrite: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> AsyncReadWrite for T {}

/// How the streaming server reaches containers; implemented by the real
/// runtime glue (berth-monitor) and by test doubles.
#[async_trait::async_trait]
pub trait StreamRuntime: Send + Sync + 'static {
    /// Starts `cmd` in container `container_id` (like `runc exec`).
    async fn exec(
        &self,
        container_id: &str,
        cmd: Vec<String>,
        tty: bool,
        stdin: bool,
    ) -> Result<ProcessIo>;

    /// Attaches to the main process of container `container_id`.
    async fn attach(&self, container_id: &str, tty: bool, stdin: bool) -> Result<ProcessIo>;

    /// Opens a TCP connection to `localhost:port` inside the network namespace
    /// of pod sandbox `pod_sandbox_id`.
    async fn port_forward(
        &self,
        pod_sandbox_id: &str,
        port: u16,
    ) -> Result<Box<dyn AsyncReadWrite>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_section_parses_and_rejects_unknown_keys() {
        let cfg: StreamingConfig =
            toml::from_str("address = \"0.0.0.0\"\nport = 10010\nidle_timeout_secs = 600\n")
                .unwrap();
        assert_eq!(cfg.address, "0.0.0.0");
        assert_eq!(cfg.port, 10010);
        assert_eq!(cfg.idle_timeout_secs, 600);
        assert_eq!(cfg.token_ttl_secs, 60);
        toml::from_str::<StreamingConfig>("prot = 1\n").unwrap_err();
        let text = toml::to_string(&StreamingConfig::default()).unwrap();
        assert_eq!(
            toml::from_str::<StreamingConfig>(&text).unwrap(),
            StreamingConfig::default()
        );
    }

    #[tokio::test]
    async fn incomplete_tls_settings_and_bad_addresses_are_refused() {
        struct NoRuntime;
        #[async_trait::async_trait]
        impl StreamRuntime for NoRuntime {
            async fn exec(&self, _: &str, _: Vec<String>, _: bool, _: bool) -> Result<ProcessIo> {
                unreachable!()
            }
            async fn attach(&self, _: &str, _: bool, _: bool) -> Result<ProcessIo> {
                unreachable!()
            }
            async fn port_forward(&self, _: &str, _: u16) -> Result<Box<dyn AsyncReadWrite>> {
                unreachable!()
            }
        }
        // A certificate without its key (or the other way round) is refused.
        let cfg = StreamingConfig {
            tls_cert: Some("/etc/berth/stream.crt".into()),
            ..Default::default()
        };
        let e = StreamingServer::start(&cfg, std::sync::Arc::new(NoRuntime))
            .await
            .err()
            .unwrap();
        assert!(matches!(e, crate::error::Error::InvalidArgument(_)));
        assert!(e.to_string().contains("tls_key"), "{e}");
        let missing = StreamingConfig {
            tls_cert: Some("/nonexistent/stream.crt".into()),
            tls_key: Some("/nonexistent/stream.key".into()),
            ..Default::default()
        };
        let e = StreamingServer::start(&missing, std::sync::Arc::new(NoRuntime))
            .await
            .err()
            .unwrap();
        assert!(e.to_string().contains("/nonexistent/stream.crt"), "{e}");
        let bad = StreamingConfig {
            address: "localhost".into(),
            ..Default::default()
        };
        let e = StreamingServer::start(&bad, std::sync::Arc::new(NoRuntime))
            .await
            .err()
            .unwrap();
        assert!(e.to_string().contains("streaming.address"));
    }
}

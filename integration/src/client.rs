//! Typed CRI clients over a unix socket, the way kubelet and crictl connect.

use std::path::{Path, PathBuf};

use berth_proto::v1::image_service_client::ImageServiceClient;
use berth_proto::v1::runtime_service_client::RuntimeServiceClient;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, Result};

/// Kubelet's default message size limit for CRI (16 MiB); ListContainers on a busy
/// node exceeds tonic's 4 MiB default.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Both CRI services on one connection.
#[derive(Clone, Debug)]
pub struct Cri {
    pub runtime: RuntimeServiceClient<Channel>,
    pub image: ImageServiceClient<Channel>,
}

impl Cri {
    /// Connects to the CRI socket at `path` (see [`connect`]).
    pub async fn connect(path: impl AsRef<Path>) -> Result<Cri> {
        connect(path).await
    }
}

/// Strips `unix://` from an endpoint (`unix:///run/berth/berth.sock`), accepting a
/// bare path too.
pub fn socket_path(endpoint: &str) -> PathBuf {
    PathBuf::from(endpoint.strip_prefix("unix://").unwrap_or(endpoint))
}

/// A gRPC channel over the unix socket at `path`. The URI is a placeholder the
/// connector ignores; every connection dials the socket.
pub async fn channel(path: impl AsRef<Path>) -> Result<Channel> {
    let path = path.as_ref().to_path_buf();
    let dial = path.clone();
    Endpoint::from_static("http://[::]:50051")
        .connect_with_connector(tower::service_fn(move |_| {
            let dial = dial.clone();
            async move {
                let stream = UnixStream::connect(&dial).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
        .map_err(|source| Error::Connect { path, source })
}

/// Connects both CRI clients to the socket at `path` (or a `unix://` endpoint).
pub async fn connect(path: impl AsRef<Path>) -> Result<Cri> {
    let path = socket_path(&path.as_ref().to_string_lossy());
    let ch = channel(&path).await?;
    Ok(Cri {
        runtime: RuntimeServiceClient::new(ch.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
        image: ImageServiceClient::new(ch)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
    })
}

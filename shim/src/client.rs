//! A CRI client over a unix socket, for the `berth` CLI.

use berth_proto::v1::{
    image_service_client::ImageServiceClient, runtime_service_client::RuntimeServiceClient,
};
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, Result};

/// Both CRI service clients on one connection.
#[derive(Debug, Clone)]
pub struct CriClient {
    /// RuntimeService client.
    pub runtime: RuntimeServiceClient<Channel>,
    /// ImageService client.
    pub image: ImageServiceClient<Channel>,
}

/// Connects to `endpoint` (`unix:///path` or a path), failing after `timeout`.
pub async fn connect(endpoint: &str, timeout: std::time::Duration) -> Result<CriClient> {
    let path = crate::config::socket_path(endpoint)?;
    // The URI is required by tonic but unused: the connector dials the socket.
    let channel = Endpoint::from_static("http://berth.invalid")
        .connect_timeout(timeout)
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
        .map_err(|e| Error::Unavailable(format!("connect to {endpoint}: {}", error_chain(&e))))?;
    Ok(CriClient {
        runtime: RuntimeServiceClient::new(channel.clone()),
        image: ImageServiceClient::new(channel),
    })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

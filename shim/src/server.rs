//! Binding the CRI socket and serving both services until shutdown.

use std::{future::Future, os::unix::fs::PermissionsExt, path::Path, sync::Arc};

use berth_proto::v1::{
    image_service_server::ImageServiceServer, runtime_service_server::RuntimeServiceServer,
};
use tokio::net::UnixListener;

use crate::{
    config::Config,
    cri::{
        service::{ImageApi, RuntimeApi},
        CriService,
    },
    error::{Error, Result},
};

/// kubelet sends and accepts messages up to 16 MiB (e.g. ListContainers on a busy node).
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// How long shutdown waits for in-flight RPCs before closing connections.
const SHUTDOWN_DRAIN: std::time::Duration = std::time::Duration::from_secs(3);

/// Serves the CRI on the configured socket until `shutdown` resolves, then
/// removes the socket.
pub async fn serve(config: Config, shutdown: impl Future<Output = ()>) -> Result<()> {
    let socket = config.socket_path()?;
    if let Some(w) = config.state_dir_warning() {
        tracing::warn!("{w}");
    }
    // Check for a live owner before touching any state: a second berthd must not
    // disturb the first one's store or socket.
    refuse_if_live(&socket)?;
    crate::cgroup_host::check_driver(
        &config.cgroup_driver,
        Path::new(crate::cgroup_host::SYSTEMD_RUN_DIR),
    )?;
    // Up before recovery, so /healthz answers "starting" while it runs.
    let _metrics = crate::metrics::start(&config.metrics).await?;
    let svc = Arc::new(CriService::open(config).await?);
    svc.start_streaming().await?;
    // Bound before recovery, which can take a while (a CNI DEL per pod a crash
    // left half-created): until it ends every RPC answers UNAVAILABLE, which
    // kubelet retries, rather than the connection being refused.
    let listener = bind(&socket)?;
    tracing::info!(socket = %socket.display(), "serving CRI");

    let runtime = RuntimeServiceServer::new(RuntimeApi(svc.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let image = ImageServiceServer::new(ImageApi(svc.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    // Graceful shutdown waits for open connections to finish; an idle client
    // (crictl left hanging, a wedged kubelet) must not keep berthd alive, so
    // the drain gets a deadline after the signal.
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown.await;
        crate::metrics::global().set_health(crate::metrics::Health::Draining);
        let _ = stopping_tx.send(());
    };
    let server = tonic::transport::Server::builder()
        .add_service(runtime)
        .add_service(image)
        .serve_with_incoming_shutdown(crate::grpc_authority::incoming(listener), shutdown);
    let drain_deadline = async move {
        if stopping_rx.await.is_ok() {
            tokio::time::sleep(SHUTDOWN_DRAIN).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let serving = async move {
        tokio::select! {
            r = server => r.map_err(|e| Error::Internal(format!("grpc server: {e}"))),
            _ = drain_deadline => {
                tracing::warn!(after = ?SHUTDOWN_DRAIN, "connections still open at shutdown; closing them");
                Ok(())
            }
        }
    };
    tokio::pin!(serving);
    // A shutdown during recovery ends both; a recovery that fails stops the
    // server (berthd must not serve a state it could not rebuild).
    let result = tokio::select! {
        r = &mut serving => r,
        r = svc.recover() => match r {
            Ok(()) => serving.await,
            Err(e) => Err(e),
        },
    };
    let _ = std::fs::remove_file(&socket);
    tracing::info!("stopped serving");
    result
}

/// Errors when something already answers on `socket`.
fn refuse_if_live(socket: &Path) -> Result<()> {
    if std::os::unix::net::UnixStream::connect(socket).is_ok() {
        return Err(Error::AlreadyExists(format!(
            "another berthd is already serving on {}: stop it first or use --listen",
            socket.display()
        )));
    }
    Ok(())
}

/// Binds the socket with mode 0660, replacing a stale one left by a crash.
fn bind(socket: &Path) -> Result<UnixListener> {
    if let Some(dir) = socket.parent() {
        // Made private when missing; an existing (possibly shared) one is kept.
        crate::store::dirs::create_private(dir)?;
    }
    match std::fs::symlink_metadata(socket) {
        Ok(_) => {
            // Nobody answered in refuse_if_live: the file is stale.
            std::fs::remove_file(socket).map_err(Error::io("remove stale socket", socket))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("inspect socket", socket)(e)),
    }
    let listener = UnixListener::bind(socket).map_err(Error::io("bind socket", socket))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660))
        .map_err(Error::io("chmod socket", socket))?;
    Ok(listener)
}

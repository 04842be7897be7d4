//! The CRI services. `service.rs` is the tonic boundary: each RPC there calls
//! one method of [`CriService`] defined in the file named after the RPC
//! (`RunPodSandbox` → `sandbox_run.rs`, `ExecSync` → `exec_sync.rs`, image RPCs
//! → `image_*.rs`). What several RPCs share lives in `lifecycle/`; request
//! checks in `validate.rs`; start-up in `recovery.rs`.

use std::{
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use crate::{
    config::Config,
    error::{Error, Result},
    image::ImageService,
    store::{dirs, Store},
};

mod container_create;
mod container_exit;
mod container_remove;
mod container_start;
mod container_stats;
mod container_status;
mod container_stop;
mod container_stream;
mod container_update;
mod events;
mod exec_sync;
mod image_fs_info;
mod image_list;
mod image_pull;
mod image_remove;
mod image_status;
pub(crate) mod lifecycle;
mod recovery;
mod runtime_status;
mod sandbox_metrics;
mod sandbox_remove;
mod sandbox_run;
mod sandbox_stats;
mod sandbox_status;
mod sandbox_stop;
mod sandbox_update;
pub mod service;
#[cfg(test)]
pub(crate) mod test_log;
mod unimplemented;
mod validate;

/// Server-streaming response type shared by every streaming RPC.
pub type BoxStream<T> =
    Pin<Box<dyn futures::Stream<Item = std::result::Result<T, tonic::Status>> + Send + 'static>>;

/// Everything the RPC bodies share: configuration, metadata store, image store.
pub struct CriService {
    pub(crate) config: Arc<Config>,
    #[allow(dead_code)] // used by the pod and container RPCs as they land
    pub(crate) store: Arc<Store>,
    #[allow(dead_code)] // used by the image RPCs as they land
    pub(crate) images: Arc<ImageService>,
    /// Pods, containers, names and events (the pod and container RPCs).
    pub(crate) lifecycle: Arc<lifecycle::Lifecycle>,
    /// The exec/attach/port-forward server, started by [`CriService::start_streaming`].
    pub(crate) streaming: std::sync::OnceLock<Arc<crate::streaming::StreamingServer>>,
    ready: AtomicBool,
}

// By hand: it holds handles (tasks, streams, callbacks, stores) with no useful
// Debug of their own.
impl std::fmt::Debug for CriService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CriService").finish_non_exhaustive()
    }
}

impl CriService {
    /// Opens the metadata and image stores under the configured root. The
    /// service answers `UNAVAILABLE` until [`CriService::recover`] has finished,
    /// so the socket can be bound first and a client that comes early (kubelet
    /// restarted with berthd) hears "retry" instead of "connection refused".
    pub async fn open(config: Config) -> Result<CriService> {
        CriService::open_with_runtime(config, None).await
    }

    /// [`CriService::open`] over another container runtime than berth-monitor
    /// (`None`: the real one); unit tests pass `lifecycle::fake::FakeRuntime`.
    pub(crate) async fn open_with_runtime(
        config: Config,
        runtime: Option<Arc<dyn lifecycle::ContainerRuntime>>,
    ) -> Result<CriService> {
        let root = config.root.clone();
        // Both are root's alone; an older or hand-made store is tightened
        // before anything is served from it (see `store::dirs`).
        for top in [&root, &config.state_dir] {
            dirs::tighten(top)?;
        }
        for sub in ["pods", "ns", "c", "seccomp"] {
            dirs::ensure(&config.state_dir.join(sub), dirs::PRIVATE)?;
        }
        let store = Arc::new(Store::open(&root.join("meta.redb"))?);
        let images = Arc::new(ImageService::open(
            &root,
            store.clone(),
            config.registry.clone(),
        )?);
        images.set_volatile_rootfs(config.volatile_rootfs);
        let config = Arc::new(config);
        let lifecycle = Arc::new(match runtime {
            None => lifecycle::Lifecycle::new(config.clone(), store.clone(), images.clone()),
            Some(rt) => lifecycle::Lifecycle::with_runtime(
                config.clone(),
                store.clone(),
                images.clone(),
                rt,
            ),
        });
        crate::metrics::objects::attach(&lifecycle);
        Ok(CriService {
            lifecycle,
            config,
            store,
            images,
            streaming: std::sync::OnceLock::new(),
            ready: AtomicBool::new(false),
        })
    }

    /// Start-up recovery (see `recovery.rs`), then the exit watcher; RPCs are
    /// served from its end on. Runs while the socket already answers. The
    /// image garbage a previous run left behind (GBs, possibly) is collected
    /// in the background from here, never before serving.
    pub async fn recover(&self) -> Result<()> {
        let found = self.lifecycle.recover().await?;
        let metrics = crate::metrics::global();
        metrics.recovered(found.pods, found.containers, found.exited_while_down);
        container_exit::spawn_exit_watcher(self.lifecycle.clone());
        self.ready.store(true, Ordering::Release);
        metrics.set_health(crate::metrics::Health::Serving);
        self.images.collect_in_background();
        Ok(())
    }

    /// Fails with `UNAVAILABLE` while start-up recovery is still running.
    pub(crate) fn ready(&self) -> Result<()> {
        if self.ready.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(Error::Unavailable(
                "berthd is starting: recovering state, retry shortly".into(),
            ))
        }
    }
}

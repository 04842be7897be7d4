//! The shared lifecycle of pods and containers, which no single RPC owns:
//! [`Lifecycle`] (records, name reservations, the event channel, and handles on
//! the config, store and image service) and where each object's files live.
//! Around it: the seam to the runtime (`runtime.rs`; `monitor.rs` is the real
//! one, `fake.rs` the unit tests'), the rollback stack every multi-step create
//! uses (`rollback.rs`), host mounts and directories (`host_fs.rs`) and CPU samples
//! for usage rates (`cpu_samples.rs`).
//!
//! berthd never forks a copy of itself: anything that needs a fresh process
//! (`create`, `exec`, `pin-ns`) runs the `berth-monitor` binary; the library
//! calls are synchronous and run on tokio's blocking pool.

mod cpu_samples;
mod host_fs;
mod monitor;
mod rollback;
mod runtime;

pub(crate) use cpu_samples::CpuSamples;
pub(crate) use host_fs::{mount_shm, remove_dir_if_exists, unmount};
pub(crate) use rollback::{settle, Rollback};
pub(crate) use runtime::{ContainerRuntime, Observed};
#[cfg(test)]
pub(crate) mod fake;
pub(crate) use crate::tasks::{blocking, detached};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_proto::encoded::{ListContainersReply, ListPodSandboxReply};
use berth_proto::v1::ContainerEventResponse;
use berth_runtime::monitor::command::MonitorCommand;
use tokio::sync::broadcast;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::image::ImageService;
use crate::state::{
    ContainerRecord, ContainerState, Names, Objects, PodRecord, ReplyCache, CONTAINERS_TABLE,
    PODS_TABLE,
};
use crate::store::Store;

/// How many events a slow GetContainerEvents subscriber may fall behind.
const EVENT_BACKLOG: usize = 1024;

/// Shared state of the pod and container RPCs; cheap to clone behind an `Arc`
/// so a create can run to completion in its own task even when kubelet gives
/// up on the call (a dropped RPC must not leave half an object behind).
pub(crate) struct Lifecycle {
    pub config: Arc<Config>,
    pub store: Arc<Store>,
    pub images: Arc<ImageService>,
    pub pods: Objects<PodRecord>,
    pub containers: Objects<ContainerRecord>,
    /// The last unfiltered ListPodSandbox reply.
    pub all_pods: ReplyCache<ListPodSandboxReply>,
    /// The last unfiltered ListContainers reply.
    pub all_containers: ReplyCache<ListContainersReply>,
    pub pod_names: Names,
    pub container_names: Names,
    pub events: broadcast::Sender<ContainerEventResponse>,
    /// The container runtime (the seam unit tests replace).
    pub runtime: Arc<dyn ContainerRuntime>,
    /// Previous CPU samples, for ContainerStats' usage rate.
    pub cpu_samples: CpuSamples,
    /// Pod networking through CNI plugins.
    pub cni: Arc<crate::network::Cni>,
}

impl Lifecycle {
    pub fn new(config: Arc<Config>, store: Arc<Store>, images: Arc<ImageService>) -> Lifecycle {
        let runtime = Arc::new(monitor::MonitorRuntime::new(&config));
        Lifecycle::with_runtime(config, store, images, runtime)
    }

    /// A lifecycle over another runtime: the unit tests' fake.
    pub fn with_runtime(
        config: Arc<Config>,
        store: Arc<Store>,
        images: Arc<ImageService>,
        runtime: Arc<dyn ContainerRuntime>,
    ) -> Lifecycle {
        let cni = Arc::new(crate::network::Cni::new(config.cni.resolved(&config.root)));
        Lifecycle {
            cni,
            config,
            store,
            images,
            pods: Objects::new(PODS_TABLE, "pod sandbox"),
            containers: Objects::new(CONTAINERS_TABLE, "container"),
            all_pods: ReplyCache::default(),
            all_containers: ReplyCache::default(),
            pod_names: Names::default(),
            container_names: Names::default(),
            events: broadcast::channel(EVENT_BACKLOG).0,
            runtime,
            cpu_samples: Default::default(),
        }
    }

    /// `<state_dir>/pods/<id>`: the pod's hostname, hosts, resolv.conf and shm.
    pub fn pod_dir(&self, id: &str) -> PathBuf {
        self.config.state_dir.join("pods").join(id)
    }

    /// `<state_dir>/ns/<id>`: the pod's namespace pins.
    pub fn ns_dir(&self, id: &str) -> PathBuf {
        self.config.state_dir.join("ns").join(id)
    }

    /// `<state_dir>/c/<id>`: the monitor's state dir. Short on purpose: the
    /// monitor's attach socket lives in it and unix socket paths must fit in
    /// 108 bytes.
    pub fn container_state_dir(&self, id: &str) -> PathBuf {
        self.config.state_dir.join("c").join(id)
    }

    /// `<state_dir>/seccomp`: compiled seccomp programs that `berth-monitor`
    /// reuses across creates and execs (compiling RuntimeDefault costs
    /// ~10 ms). Volatile like the rest of the state dir, and rebuilt on demand.
    pub fn seccomp_cache_dir(&self) -> PathBuf {
        self.config.state_dir.join("seccomp")
    }

    /// `berth-monitor exec` of the process in `process_file` in the container
    /// whose monitor state is in `state_dir`.
    pub fn exec_helper(
        &self,
        state_dir: &Path,
        process_file: &Path,
        tty: bool,
    ) -> tokio::process::Command {
        self.runtime.exec_command(state_dir, process_file, tty)
    }

    /// Runs `berth-monitor <cmd>` and returns its stdout.
    pub async fn run_monitor(&self, cmd: &MonitorCommand) -> Result<String> {
        self.runtime.run_monitor(cmd).await
    }

    /// `<root>/containers/<id>`: the OCI bundle (config.json next to the rootfs).
    pub fn bundle_dir(&self, id: &str) -> PathBuf {
        self.config.root.join("containers").join(id)
    }
}

/// A runtime library error as the shim's, for `map_err`; its code is chosen
/// at the boundary from the runtime's own `kind()` ([`Error::code`]).
pub(crate) fn runtime_error(e: berth_runtime::Error) -> Error {
    Error::RuntimeCall(e)
}

impl Lifecycle {
    /// The running container `id` (a unique prefix is fine), or the CRI error
    /// kubelet expects: INVALID_ARGUMENT for an empty id, NOT_FOUND, or
    /// FAILED_PRECONDITION naming its state.
    pub(crate) async fn running_container(&self, id: &str) -> Result<ContainerRecord> {
        if id.is_empty() {
            return Err(Error::InvalidArgument("container_id: empty".into()));
        }
        let (id, _) = self.containers.must_find(id)?;
        let rec = self
            .refresh_if_idle(&id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("container {id:?} not found")))?;
        if rec.state != ContainerState::Running {
            return Err(Error::FailedPrecondition(format!(
                "container {id} is not running ({:?})",
                rec.state
            )));
        }
        Ok(rec)
    }
}

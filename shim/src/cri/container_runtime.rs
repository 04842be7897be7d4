//! What the pod and container RPCs share: [`Lifecycle`] (records, name
//! reservations, the event channel, and handles on the config, store and image
//! service), how berthd drives `berth-monitor` and the `berth_runtime` library,
//! and the rollback stack every multi-step create uses.
//!
//! berthd never forks a copy of itself: anything that needs a fresh process
//! (`create`, `exec`, `pin-ns`) runs the `berth-monitor` binary; the library
//! calls are synchronous and run on tokio's blocking pool.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use berth_proto::encoded::{ListContainersReply, ListPodSandboxReply};
use berth_proto::v1::ContainerEventResponse;
use berth_runtime::monitor::command::MonitorCommand;
use tokio::sync::broadcast;
use tracing::instrument::{Instrument, WithSubscriber};

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
    /// The `berth-monitor` binary.
    pub monitor: PathBuf,
    /// Previous CPU samples, for ContainerStats' usage rate.
    pub cpu_samples: super::container_stats::CpuSamples,
    /// Pod networking through CNI plugins.
    pub cni: Arc<crate::network::Cni>,
}

impl Lifecycle {
    pub fn new(config: Arc<Config>, store: Arc<Store>, images: Arc<ImageService>) -> Lifecycle {
        let monitor = monitor_path(&config);
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
            monitor,
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
        let mut c = tokio::process::Command::new(&self.monitor);
        c.args(
            MonitorCommand::Exec {
                state_dir: state_dir.to_path_buf(),
                process: process_file.to_path_buf(),
                tty,
                seccomp_cache: Some(self.seccomp_cache_dir()),
            }
            .encode(),
        );
        c
    }

    /// `<root>/containers/<id>`: the OCI bundle (config.json next to the rootfs).
    pub fn bundle_dir(&self, id: &str) -> PathBuf {
        self.config.root.join("containers").join(id)
    }

    /// Runs `berth-monitor <cmd>` and returns its stdout; a failure carries the
    /// one-line reason the monitor printed.
    pub async fn run_monitor(&self, cmd: &MonitorCommand) -> Result<String> {
        let sub = cmd.name();
        let out = tokio::process::Command::new(&self.monitor)
            .args(cmd.encode())
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| Error::Runtime(format!("run {} {sub}: {e}", self.monitor.display())))?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).trim().to_string());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let msg = stderr.trim().trim_start_matches("berth-monitor: ");
        Err(Error::Runtime(format!(
            "berth-monitor {sub}: {}",
            if msg.is_empty() {
                format!("exited with {}", out.status)
            } else {
                msg.to_string()
            }
        )))
    }
}

/// Finds `berth-monitor`: the configured path, else next to berthd, else $PATH.
pub(crate) fn monitor_path(config: &Config) -> PathBuf {
    if !config.monitor_path.is_empty() {
        return PathBuf::from(&config.monitor_path);
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
    {
        let candidate = dir.join("berth-monitor");
        if candidate.is_file() {
            return candidate;
        }
    }
    PathBuf::from("berth-monitor")
}

/// A runtime library error as the shim's, for `map_err`; its code is chosen
/// at the boundary from the runtime's own `kind()` ([`Error::code`]).
pub(crate) fn runtime_error(e: berth_runtime::Error) -> Error {
    Error::RuntimeCall(e)
}

/// Runs a synchronous runtime call on the blocking pool, inside the caller's
/// span and subscriber: a pool thread has neither, and the call's logs must
/// still name the RPC and its ids.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let span = tracing::Span::current();
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    tokio::task::spawn_blocking(move || {
        tracing::dispatcher::with_default(&dispatch, || span.in_scope(f))
    })
    .await
    .map_err(|e| Error::Internal(format!("blocking task failed: {e}")))?
}

/// Runs `fut` in its own task and waits for it: if the RPC is cancelled the work
/// still finishes (and rolls back or commits) instead of stopping half-way. The
/// task keeps the caller's span (and subscriber), so what it logs, rollback
/// failures included, carries the RPC and its ids.
pub(crate) async fn detached<T: Send + 'static>(
    fut: impl Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    tokio::spawn(fut.in_current_span().with_current_subscriber())
        .await
        .map_err(|e| Error::Internal(format!("task failed: {e}")))?
}

type UndoFn = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = Result<()>> + Send>> + Send>;

/// The rollback stack of a multi-step create: each step that changed something
/// pushes its undo; on failure the undos run in reverse, each failure logged
/// (and the rest still run); on success [`Rollback::disarm`] drops them.
#[derive(Default)]
pub(crate) struct Rollback {
    steps: Vec<(&'static str, UndoFn)>,
}

impl Rollback {
    /// Registers the undo of a step that just succeeded.
    pub fn push<F, Fut>(&mut self, what: &'static str, f: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        self.steps.push((what, Box::new(move || Box::pin(f()))));
    }

    /// Everything succeeded: keep it.
    pub fn disarm(mut self) {
        self.steps.clear();
    }

    /// Undoes every registered step, newest first. Returns whether all undos
    /// succeeded (the caller decides whether leftovers need marking).
    pub async fn run(mut self) -> bool {
        let mut clean = true;
        while let Some((what, undo)) = self.steps.pop() {
            if let Err(e) = undo().await {
                tracing::error!(step = what, error = %e, "rollback step failed");
                clean = false;
            }
        }
        clean
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[tokio::test]
    async fn rollback_runs_undos_newest_first_and_keeps_going_after_a_failure() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut rb = Rollback::default();
        for (i, fail) in [(1, false), (2, true), (3, false)] {
            let log = log.clone();
            rb.push("step", move || async move {
                log.lock().unwrap().push(i);
                if fail {
                    Err(Error::Internal("undo failed".into()))
                } else {
                    Ok(())
                }
            });
        }
        assert!(!rb.run().await);
        assert_eq!(*log.lock().unwrap(), vec![3, 2, 1]);
    }

    #[tokio::test]
    async fn a_disarmed_rollback_undoes_nothing() {
        let hit = Arc::new(Mutex::new(false));
        let mut rb = Rollback::default();
        let h = hit.clone();
        rb.push("step", move || async move {
            *h.lock().unwrap() = true;
            Ok(())
        });
        rb.disarm();
        assert!(!*hit.lock().unwrap());
    }

    // Regression: the tasks these helpers start used to log with no span, so
    // RunPodSandbox's rollback and CNI failures named neither RPC nor pod.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn detached_and_blocking_work_logs_inside_the_callers_span() {
        let (log, _guard) = crate::cri::test_log::Captured::install();
        let span = tracing::info_span!("rpc", rpc = "Probe", pod_sandbox_id = "p1");
        async {
            detached(async {
                tracing::warn!("from the detached task");
                blocking(|| {
                    tracing::warn!("from the blocking pool");
                    Ok(())
                })
                .await
            })
            .await
        }
        .instrument(span)
        .await
        .unwrap();
        for needle in ["from the detached task", "from the blocking pool"] {
            let line = log.line(needle);
            assert!(
                line.contains(r#"rpc{rpc="Probe" pod_sandbox_id="p1"}"#),
                "{line}"
            );
        }
    }

    #[test]
    fn configured_monitor_path_wins() {
        let cfg = Config {
            monitor_path: "/opt/x/berth-monitor".into(),
            ..Config::default()
        };
        assert_eq!(monitor_path(&cfg), PathBuf::from("/opt/x/berth-monitor"));
    }
}

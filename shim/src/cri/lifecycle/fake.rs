//! A [`ContainerRuntime`] held in memory, for unit tests of the RPC bodies:
//! containers are entries in a map keyed by state dir, signals and calls are
//! recorded, and any operation can be made to fail. [`TestCri`] opens a real
//! [`CriService`] (metadata store and image store in a temporary root) over
//! it and plants container records in the states a test needs, so each RPC's
//! logic, error paths included, runs without a kernel, images or root.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_proto::v1::{ContainerConfig, ContainerMetadata};
use berth_runtime::monitor::command::MonitorCommand;
use oci_spec::runtime::LinuxResources;

use super::runtime::{ContainerRuntime, Observed};
use crate::config::Config;
use crate::cri::CriService;
use crate::error::{Error, Result};
use crate::state::{ContainerRecord, ContainerState, RECORD_VERSION};
use crate::streaming::ProcessIo;

/// An error to answer instead of doing an operation.
type Failure = Box<dyn Fn() -> Error + Send + Sync>;

/// One fake container.
#[derive(Debug, Clone)]
pub(crate) struct FakeContainer {
    pub observed: Observed,
    /// Every `kill(signal, all)` it received, in order.
    pub signals: Vec<(i32, bool)>,
    /// Whether the init ends on the stop signal (false: only SIGKILL ends it).
    pub honours_sigterm: bool,
    /// The last resources `update` applied.
    pub resources: Option<LinuxResources>,
    pub log_reopened: usize,
}

impl FakeContainer {
    fn new(observed: Observed) -> FakeContainer {
        FakeContainer {
            observed,
            signals: Vec::new(),
            honours_sigterm: true,
            resources: None,
            log_reopened: 0,
        }
    }
}

#[derive(Default)]
pub(crate) struct FakeRuntime {
    containers: Mutex<HashMap<PathBuf, FakeContainer>>,
    failures: Mutex<HashMap<&'static str, Failure>>,
    /// Operation names in call order (`start`, `kill`, `delete`, ...).
    calls: Mutex<Vec<String>>,
    /// The shell script `exec_command` and `attach` run on the host.
    script: Mutex<String>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FakeRuntime {
    pub fn new() -> Arc<FakeRuntime> {
        Arc::new(FakeRuntime::default())
    }

    /// Adds a container the runtime knows in state `observed`.
    pub fn add(&self, state_dir: &Path, observed: Observed) {
        lock(&self.containers).insert(state_dir.to_path_buf(), FakeContainer::new(observed));
    }

    /// The container at `state_dir`, if the runtime still has it.
    pub fn container(&self, state_dir: &Path) -> Option<FakeContainer> {
        lock(&self.containers).get(state_dir).cloned()
    }

    /// Changes a container in place (make it exit, ignore SIGTERM, ...).
    pub fn with(&self, state_dir: &Path, f: impl FnOnce(&mut FakeContainer)) {
        if let Some(c) = lock(&self.containers).get_mut(state_dir) {
            f(c)
        }
    }

    /// Makes every later call of `op` fail with `err()`.
    pub fn fail(&self, op: &'static str, err: impl Fn() -> Error + Send + Sync + 'static) {
        lock(&self.failures).insert(op, Box::new(err));
    }

    /// The operations called so far, in order.
    pub fn calls(&self) -> Vec<String> {
        lock(&self.calls).clone()
    }

    /// What `exec_command` and `attach` run: `sh -c <script>` on the host.
    pub fn set_script(&self, script: &str) {
        *lock(&self.script) = script.to_string();
    }

    fn enter(&self, op: &'static str) -> Result<()> {
        lock(&self.calls).push(op.to_string());
        match lock(&self.failures).get(op) {
            Some(f) => Err(f()),
            None => Ok(()),
        }
    }

    fn on<T>(
        &self,
        state_dir: &Path,
        f: impl FnOnce(&mut FakeContainer) -> Result<T>,
    ) -> Result<T> {
        match lock(&self.containers).get_mut(state_dir) {
            Some(c) => f(c),
            None => Err(Error::RuntimeCall(berth_runtime::Error::NotFound(
                state_dir.to_path_buf(),
            ))),
        }
    }

    fn command(&self) -> tokio::process::Command {
        let mut c = tokio::process::Command::new("/bin/sh");
        c.arg("-c").arg(lock(&self.script).clone());
        c
    }
}

#[async_trait::async_trait]
impl ContainerRuntime for FakeRuntime {
    async fn run_monitor(&self, cmd: &MonitorCommand) -> Result<String> {
        self.enter("run_monitor")?;
        Ok(format!("fake {}", cmd.name()))
    }

    fn exec_command(
        &self,
        _state_dir: &Path,
        _process_file: &Path,
        _tty: bool,
    ) -> tokio::process::Command {
        lock(&self.calls).push("exec_command".into());
        self.command()
    }

    async fn attach(&self, state_dir: &Path, _tty: bool, stdin: bool) -> Result<ProcessIo> {
        self.enter("attach")?;
        self.on(state_dir, |_| Ok(()))?;
        let (io, _) = crate::streaming::process::spawn_piped(self.command(), stdin)?;
        Ok(io)
    }

    fn observe(&self, state_dir: &Path) -> Observed {
        lock(&self.calls).push("observe".into());
        self.container(state_dir)
            .map(|c| c.observed)
            .unwrap_or_else(|| Observed::Lost("fake: no such container".into()))
    }

    fn start(&self, state_dir: &Path) -> Result<Option<i64>> {
        self.enter("start")?;
        self.on(state_dir, |c| match c.observed {
            Observed::Created => {
                c.observed = Observed::Running { started_at: 42 };
                Ok(Some(42))
            }
            ref other => Err(Error::RuntimeCall(berth_runtime::Error::BadState {
                id: "fake".into(),
                op: "start",
                status: format!("{other:?}"),
            })),
        })
    }

    fn kill(&self, state_dir: &Path, signal: i32, all: bool) -> Result<()> {
        self.enter("kill")?;
        self.on(state_dir, |c| {
            c.signals.push((signal, all));
            let dies = signal == libc::SIGKILL || c.honours_sigterm;
            if dies && matches!(c.observed, Observed::Running { .. } | Observed::Created) {
                c.observed = Observed::Exited {
                    code: 128 + signal,
                    finished_at: 43,
                    oom_killed: false,
                };
            }
            Ok(())
        })
    }

    fn exit_fd(&self, _state_dir: &Path) -> Option<OwnedFd> {
        None
    }

    fn update(&self, state_dir: &Path, resources: &LinuxResources) -> Result<()> {
        self.enter("update")?;
        self.on(state_dir, |c| {
            c.resources = Some(resources.clone());
            Ok(())
        })
    }

    fn stats(&self, state_dir: &Path) -> Result<berth_runtime::Stats> {
        self.enter("stats")?;
        self.on(state_dir, |_| {
            Ok(berth_runtime::Stats {
                cpu_usage_ns: 1_000,
                memory_usage_bytes: 4096,
                pids: 2,
                ..Default::default()
            })
        })
    }

    fn reopen_log(&self, state_dir: &Path) -> Result<()> {
        self.enter("reopen_log")?;
        self.on(state_dir, |c| {
            c.log_reopened += 1;
            Ok(())
        })
    }

    fn delete(&self, state_dir: &Path) -> Result<()> {
        self.enter("delete")?;
        lock(&self.containers).remove(state_dir);
        Ok(())
    }
}

/// A [`CriService`] over a [`FakeRuntime`], in a temporary root.
pub(crate) struct TestCri {
    pub cri: CriService,
    pub runtime: Arc<FakeRuntime>,
    _dir: tempfile::TempDir,
}

impl TestCri {
    pub async fn new() -> TestCri {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = Config {
            root: dir.path().join("root"),
            state_dir: dir.path().join("run"),
            ..Config::default()
        };
        let runtime = FakeRuntime::new();
        let cri = CriService::open_with_runtime(config, Some(runtime.clone()))
            .await
            .expect("open the CRI service over the fake runtime");
        TestCri {
            cri,
            runtime,
            _dir: dir,
        }
    }

    /// Plants a container record in `state` (and the runtime's matching
    /// container, unless the record says it is gone); returns its id.
    pub fn add_container(&self, name: &str, state: ContainerState) -> String {
        let lc = &self.cri.lifecycle;
        let id = format!("{name:0>64}");
        let state_dir = lc.container_state_dir(&id);
        let bundle = lc.bundle_dir(&id);
        std::fs::create_dir_all(&bundle).expect("bundle dir");
        // What exec builds its process from.
        let spec = r#"{"process":{"args":["sleep"],"cwd":"/","user":{"uid":0,"gid":0}}}"#;
        std::fs::write(bundle.join("config.json"), spec).expect("bundle config");
        let rec = ContainerRecord {
            name: format!("{name}_pod_default_uid_0"),
            config: ContainerConfig {
                metadata: Some(ContainerMetadata {
                    name: name.into(),
                    attempt: 0,
                }),
                ..Default::default()
            },
            started_at: 0,
            image_id: format!("sha256:{}", "a".repeat(64)),
            image_ref: format!("sha256:{}", "a".repeat(64)),
            stop_signal: libc::SIGTERM,
            pid: 4242,
            ..container_record(lc, &id, &"p".repeat(64), state)
        };
        lc.containers
            .insert(&lc.store, &id, rec)
            .expect("insert the container record");
        let observed = match state {
            ContainerState::Created | ContainerState::Creating => Some(Observed::Created),
            ContainerState::Running => Some(Observed::Running { started_at: 42 }),
            ContainerState::Exited => Some(Observed::Exited {
                code: 0,
                finished_at: 43,
                oom_killed: false,
            }),
            ContainerState::Unknown => None,
        };
        if let Some(o) = observed {
            self.runtime.add(&state_dir, o);
        }
        id
    }

    /// The record berthd holds for `id` now.
    pub fn record(&self, id: &str) -> Option<ContainerRecord> {
        self.cri.lifecycle.containers.get(id).map(|e| e.get())
    }

    /// The runtime-side state dir of container `id`.
    pub fn state_dir(&self, id: &str) -> PathBuf {
        self.cri.lifecycle.container_state_dir(id)
    }
}

/// A container record of container `id` in pod `pod`, with `lifecycle`'s
/// bundle and state dirs; tests change the fields they are about.
pub(crate) fn container_record(
    lifecycle: &super::Lifecycle,
    id: &str,
    pod: &str,
    state: ContainerState,
) -> ContainerRecord {
    ContainerRecord {
        version: RECORD_VERSION,
        id: id.into(),
        pod_id: pod.into(),
        name: format!("{id}_{pod}_ns_uid_0"),
        config: ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: id.into(),
                attempt: 0,
            }),
            ..Default::default()
        },
        state,
        created_at: 1,
        started_at: 2,
        finished_at: 0,
        exit_code: 0,
        reason: String::new(),
        message: String::new(),
        image_id: "sha256:00".into(),
        image_ref: "sha256:00".into(),
        stop_signal: 15,
        bundle: lifecycle.bundle_dir(id),
        state_dir: lifecycle.container_state_dir(id),
        log_path: None,
        pid: 0,
        user: None,
    }
}

/// A valid pod config (`web` in `default`, its own network, IPC and
/// pid namespaces): what RunPodSandbox tests start from.
pub(crate) fn web_pod() -> berth_proto::v1::PodSandboxConfig {
    use berth_proto::v1::{
        LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption,
        PodSandboxConfig, PodSandboxMetadata,
    };
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "web".into(),
            uid: "u1".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: "web".into(),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    pid: NamespaceMode::Container as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

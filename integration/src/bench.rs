//! Side-by-side CRI benchmarks: the same workload against any CRI endpoint
//! (berthd, containerd), timed per RPC, summarised as p50/p95/max.

use std::time::{Duration, Instant};

use berth_proto::v1 as cri;
use tonic::Code;

use crate::client::Cri;

/// Timings of one operation on one runtime, or why there are none.
#[derive(Clone, Debug)]
pub enum Outcome {
    Samples(Vec<Duration>),
    /// The runtime answered UNIMPLEMENTED.
    Unimplemented,
    /// Any other failure, with the message.
    Failed(String),
    /// Never attempted because an earlier step of the workload failed.
    NotRun,
    /// One measured amount (a wall time, a memory size, a count).
    Value(f64, Unit),
}

/// The unit of an [`Outcome::Value`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unit {
    Ms,
    MiB,
    Count,
}

impl Outcome {
    /// The `q` quantile (0..=1, nearest rank) of the samples.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let Outcome::Samples(s) = self else {
            return None;
        };
        if s.is_empty() {
            return None;
        }
        let mut v = s.clone();
        v.sort();
        // q is in [0, 1]: the rank is in 0..=len.
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        Some(v[rank - 1])
    }

    /// `p50 / p95 / max` in milliseconds, or the reason there are none.
    pub fn summary(&self, runtime: &str) -> String {
        match self {
            Outcome::Samples(_) => {
                let ms = |d: Option<Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1000.0);
                let n = match self {
                    Outcome::Samples(s) => s.len(),
                    _ => 0,
                };
                format!(
                    "{:.1} / {:.1} / {:.1} (n={n})",
                    ms(self.quantile(0.5)),
                    ms(self.quantile(0.95)),
                    ms(self.quantile(1.0))
                )
            }
            Outcome::Unimplemented => format!("n/a ({runtime}: UNIMPLEMENTED)"),
            Outcome::Failed(m) => format!("error ({runtime}): {m}"),
            Outcome::NotRun => "not run (an earlier step failed)".into(),
            Outcome::Value(v, Unit::Ms) => format!("{v:.1} ms"),
            Outcome::Value(v, Unit::MiB) => format!("{v:.2} MiB"),
            Outcome::Value(v, Unit::Count) => format!("{v:.0}"),
        }
    }
}

/// Ratio of the p50s (`a / b`), when both have samples; of the values when
/// both are values in the same unit (and `b` is not zero).
pub fn p50_ratio(a: &Outcome, b: &Outcome) -> Option<f64> {
    if let (Outcome::Value(a, ua), Outcome::Value(b, ub)) = (a, b) {
        return (ua == ub && *b > 0.0).then(|| a / b);
    }
    let (a, b) = (a.quantile(0.5)?, b.quantile(0.5)?);
    (b.as_nanos() > 0).then(|| a.as_secs_f64() / b.as_secs_f64())
}

/// Collects samples of one operation; the first error ends collection.
#[derive(Default)]
struct Recorder {
    samples: Vec<Duration>,
    error: Option<Outcome>,
}

impl Recorder {
    fn record(&mut self, took: Duration, result: Result<(), tonic::Status>) -> bool {
        match result {
            Ok(()) => {
                self.samples.push(took);
                true
            }
            Err(s) => {
                if self.error.is_none() {
                    self.error = Some(if s.code() == Code::Unimplemented {
                        Outcome::Unimplemented
                    } else {
                        Outcome::Failed(format!("{:?}: {}", s.code(), s.message()))
                    });
                }
                false
            }
        }
    }

    fn outcome(self) -> Outcome {
        match self.error {
            Some(e) if self.samples.is_empty() => e,
            Some(Outcome::Unimplemented) => Outcome::Unimplemented,
            Some(e) => e,
            None if self.samples.is_empty() => Outcome::NotRun,
            None => Outcome::Samples(self.samples),
        }
    }
}

async fn timed<T>(
    fut: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> (Duration, Result<T, tonic::Status>) {
    let start = Instant::now();
    let r = fut.await;
    (start.elapsed(), r.map(tonic::Response::into_inner))
}

fn image_spec(image: &str) -> Option<cri::ImageSpec> {
    Some(cri::ImageSpec {
        image: image.into(),
        ..Default::default()
    })
}

/// Removes `image` (absent is fine) then times a PullImage, `iterations` times:
/// every pull is cold as far as the runtime's image store goes. Call it on a
/// runtime that does not hold `image` yet: without RemoveImage only that first
/// pull is measured.
pub async fn pull_cold(client: &mut Cri, image: &str, iterations: usize) -> Outcome {
    let mut rec = Recorder::default();
    for i in 0..iterations {
        let rm = client
            .image
            .remove_image(cri::RemoveImageRequest {
                image: image_spec(image),
            })
            .await;
        let mut last = false;
        match rm {
            Ok(_) => {}
            Err(s) if s.code() == Code::NotFound => {}
            // A freshly started runtime holds no images: its first pull is cold
            // even without RemoveImage. Later ones would be warm, so stop there.
            Err(s) if s.code() == Code::Unimplemented && i == 0 => last = true,
            Err(s) => {
                rec.error.get_or_insert(Outcome::Failed(format!(
                    "RemoveImage (needed for cold pulls): {:?}: {}",
                    s.code(),
                    s.message()
                )));
                break;
            }
        }
        let (took, r) = timed(client.image.pull_image(cri::PullImageRequest {
            image: image_spec(image),
            ..Default::default()
        }))
        .await;
        if !rec.record(took, r.map(|_| ())) || last {
            break;
        }
    }
    rec.outcome()
}

/// The RPCs of one pod's life, timed separately.
pub const POD_OPS: &[&str] = &[
    "RunPodSandbox",
    "CreateContainer",
    "StartContainer",
    "StopContainer",
    "RemoveContainer",
    "StopPodSandbox",
    "RemovePodSandbox",
];

/// Runs `iterations` pods (one busybox container sleeping) through their whole
/// life; returns one outcome per entry of [`POD_OPS`]. `image` must already be
/// pulled; `log_dir` is the pods' log directory. With `pod_network` each pod gets
/// its own network namespace through CNI, else it shares the host's.
pub async fn pod_lifecycle(
    client: &mut Cri,
    image: &str,
    log_dir: &std::path::Path,
    iterations: usize,
    pod_network: bool,
) -> Vec<Outcome> {
    pod_lifecycle_with(client, image, log_dir, iterations, pod_network, None).await
}

/// [`pod_lifecycle`] where each pod (with `userns_base = Some(N)`) gets its own
/// user namespace, as a kubelet asks for `hostUsers: false`: maps
/// `0 -> N + i * 65536`, 65536 ids, a different range per pod. Such a pod
/// needs its own network namespace (`pod_network`).
pub async fn pod_lifecycle_with(
    client: &mut Cri,
    image: &str,
    log_dir: &std::path::Path,
    iterations: usize,
    pod_network: bool,
    userns_base: Option<u32>,
) -> Vec<Outcome> {
    let network = if pod_network {
        cri::NamespaceMode::Pod
    } else {
        cri::NamespaceMode::Node
    };
    let mut recs: Vec<Recorder> = POD_OPS.iter().map(|_| Recorder::default()).collect();
    'pods: for i in 0..iterations {
        let pod_config = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: format!("bench-{i}"),
                uid: format!("bench-uid-{}-{i}", std::process::id()),
                namespace: "bench".into(),
                attempt: 0,
            }),
            // Host-network pods share the node's UTS namespace: no hostname.
            hostname: if pod_network {
                format!("bench-{i}")
            } else {
                String::new()
            },
            log_directory: log_dir.join(format!("pod-{i}")).to_string_lossy().into(),
            linux: Some(cri::LinuxPodSandboxConfig {
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: network as i32,
                        userns_options: userns_base.map(|base| {
                            let map = vec![cri::IdMapping {
                                container_id: 0,
                                host_id: base + u32::try_from(i % 64).unwrap_or(0) * 65536,
                                length: 65536,
                            }];
                            cri::UserNamespace {
                                mode: cri::NamespaceMode::Pod as i32,
                                uids: map.clone(),
                                gids: map,
                            }
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (took, r) = timed(client.runtime.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod_config.clone()),
            ..Default::default()
        }))
        .await;
        let pod_id = match r {
            Ok(resp) => {
                recs[0].record(took, Ok(()));
                resp.pod_sandbox_id
            }
            Err(s) => {
                recs[0].record(took, Err(s));
                break;
            }
        };
        let container_config = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: "sleeper".into(),
                attempt: 0,
            }),
            image: image_spec(image),
            command: vec!["sleep".into(), "3600".into()],
            log_path: "sleeper.log".into(),
            ..Default::default()
        };
        let (took, r) = timed(
            client
                .runtime
                .create_container(cri::CreateContainerRequest {
                    pod_sandbox_id: pod_id.clone(),
                    config: Some(container_config),
                    sandbox_config: Some(pod_config),
                }),
        )
        .await;
        let mut container_id = None;
        match r {
            Ok(resp) => {
                recs[1].record(took, Ok(()));
                container_id = Some(resp.container_id);
            }
            Err(s) => {
                recs[1].record(took, Err(s));
            }
        }
        if let Some(id) = &container_id {
            let (took, r) = timed(client.runtime.start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            }))
            .await;
            if recs[2].record(took, r.map(|_| ())) {
                let (took, r) = timed(client.runtime.stop_container(cri::StopContainerRequest {
                    container_id: id.clone(),
                    timeout: 0,
                }))
                .await;
                recs[3].record(took, r.map(|_| ()));
            }
            // Remove even after a failed start or stop, so the pod can go too.
            let (took, r) = timed(
                client
                    .runtime
                    .remove_container(cri::RemoveContainerRequest {
                        container_id: id.clone(),
                    }),
            )
            .await;
            recs[4].record(took, r.map(|_| ()));
        }
        let (took, r) = timed(client.runtime.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod_id.clone(),
        }))
        .await;
        let stopped = recs[5].record(took, r.map(|_| ()));
        let (took, r) = timed(
            client
                .runtime
                .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                    pod_sandbox_id: pod_id,
                }),
        )
        .await;
        let removed = recs[6].record(took, r.map(|_| ()));
        if container_id.is_none() || !stopped || !removed {
            break 'pods;
        }
    }
    recs.into_iter().map(Recorder::outcome).collect()
}

/// Operations timed by [`list_latency`], in its outcome order.
pub const LIST_OPS: [&str; 2] = ["ListContainers", "ListPodSandbox"];

/// Creates `containers` containers (not started, so no runtime process is
/// needed per container) in `pods` host-network pods, then times
/// ListContainers and ListPodSandbox `iterations` times each, then removes the
/// pods. `image` must already be pulled.
pub async fn list_latency(
    client: &mut Cri,
    image: &str,
    log_dir: &std::path::Path,
    pods: usize,
    containers: usize,
    iterations: usize,
) -> Vec<Outcome> {
    let mut recs: Vec<Recorder> = LIST_OPS.iter().map(|_| Recorder::default()).collect();
    let mut pod_ids = Vec::new();
    let mut failed = None;
    'setup: for p in 0..pods.max(1) {
        let pod_config = simple_pod_config(&format!("list-{p}"), log_dir);
        let pod = match client
            .runtime
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(pod_config.clone()),
                ..Default::default()
            })
            .await
        {
            Ok(r) => r.into_inner().pod_sandbox_id,
            Err(s) => {
                failed = Some(s);
                break 'setup;
            }
        };
        pod_ids.push(pod.clone());
        let per_pod = containers / pods.max(1) + usize::from(p < containers % pods.max(1));
        for c in 0..per_pod {
            let config = cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata {
                    name: format!("c{c}"),
                    attempt: 0,
                }),
                image: image_spec(image),
                command: vec!["sleep".into(), "3600".into()],
                log_path: format!("c{c}.log"),
                ..Default::default()
            };
            if let Err(s) = client
                .runtime
                .create_container(cri::CreateContainerRequest {
                    pod_sandbox_id: pod.clone(),
                    config: Some(config),
                    sandbox_config: Some(pod_config.clone()),
                })
                .await
            {
                failed = Some(s);
                break 'setup;
            }
        }
    }
    if let Some(s) = failed {
        for rec in &mut recs {
            rec.record(Duration::ZERO, Err(s.clone()));
        }
    } else {
        for _ in 0..iterations {
            let (took, r) = timed(
                client
                    .runtime
                    .list_containers(cri::ListContainersRequest { filter: None }),
            )
            .await;
            let r = r.and_then(|l| {
                if l.containers.len() == containers {
                    Ok(())
                } else {
                    Err(tonic::Status::internal(format!(
                        "listed {} containers, expected {containers}",
                        l.containers.len()
                    )))
                }
            });
            recs[0].record(took, r);
            let (took, r) = timed(
                client
                    .runtime
                    .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None }),
            )
            .await;
            recs[1].record(took, r.map(|_| ()));
        }
    }
    for pod in pod_ids {
        let _ = client
            .runtime
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: pod.clone(),
            })
            .await;
        let _ = client
            .runtime
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: pod,
            })
            .await;
    }
    recs.into_iter().map(Recorder::outcome).collect()
}

/// The command of every container the bench starts and keeps running.
pub const SLEEPER: [&str; 2] = ["sleep", "3600"];

/// A host-network pod with its own PID namespace per container (kubelet's
/// default), logging under `log_dir/<name>`.
fn simple_pod_config(name: &str, log_dir: &std::path::Path) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            uid: format!("{name}-uid-{}", std::process::id()),
            namespace: "bench".into(),
            attempt: 0,
        }),
        log_directory: log_dir.join(name).to_string_lossy().into(),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: cri::NamespaceMode::Node as i32,
                    pid: cri::NamespaceMode::Container as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A pod with one running [`SLEEPER`] container.
pub(crate) struct RunningPod {
    pub pod_id: String,
    pub container_id: String,
}

/// RunPodSandbox + CreateContainer + StartContainer. On failure the pod (if
/// made) is removed again and the error names the failing RPC.
pub(crate) async fn start_sleeper_pod(
    client: &mut Cri,
    name: &str,
    image: &str,
    log_dir: &std::path::Path,
) -> Result<RunningPod, String> {
    let config = simple_pod_config(name, log_dir);
    let pod_id = client
        .runtime
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            ..Default::default()
        })
        .await
        .map_err(|s| format!("RunPodSandbox: {:?}: {}", s.code(), s.message()))?
        .into_inner()
        .pod_sandbox_id;
    let started = async {
        let container_id = client
            .runtime
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod_id.clone(),
                config: Some(cri::ContainerConfig {
                    metadata: Some(cri::ContainerMetadata {
                        name: "sleeper".into(),
                        attempt: 0,
                    }),
                    image: image_spec(image),
                    command: SLEEPER.iter().map(|s| s.to_string()).collect(),
                    log_path: "sleeper.log".into(),
                    ..Default::default()
                }),
                sandbox_config: Some(config),
            })
            .await
            .map_err(|s| format!("CreateContainer: {:?}: {}", s.code(), s.message()))?
            .into_inner()
            .container_id;
        client
            .runtime
            .start_container(cri::StartContainerRequest {
                container_id: container_id.clone(),
            })
            .await
            .map_err(|s| format!("StartContainer: {:?}: {}", s.code(), s.message()))?;
        Ok::<_, String>(container_id)
    }
    .await;
    match started {
        Ok(container_id) => Ok(RunningPod {
            pod_id,
            container_id,
        }),
        Err(e) => {
            remove_pod(client, &pod_id).await;
            Err(e)
        }
    }
}

/// StopPodSandbox + RemovePodSandbox (which removes its containers too);
/// errors are left for the leftover check to find.
pub(crate) async fn remove_pod(client: &mut Cri, pod_id: &str) {
    let _ = client
        .runtime
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod_id.into(),
        })
        .await;
    let _ = client
        .runtime
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod_id.into(),
        })
        .await;
}

/// Starts one pod with a sleeping container, then times `iterations`
/// ExecSync `true` in it (a non-zero exit is an error), then removes the pod.
pub async fn exec_sync(
    client: &mut Cri,
    image: &str,
    log_dir: &std::path::Path,
    iterations: usize,
) -> Outcome {
    let pod = match start_sleeper_pod(client, "exec-sync", image, log_dir).await {
        Ok(p) => p,
        Err(e) => return Outcome::Failed(format!("setup: {e}")),
    };
    let mut rec = Recorder::default();
    for _ in 0..iterations {
        let (took, r) = timed(client.runtime.exec_sync(cri::ExecSyncRequest {
            container_id: pod.container_id.clone(),
            cmd: vec!["true".into()],
            timeout: 10,
        }))
        .await;
        let r = r.and_then(|resp| match resp.exit_code {
            0 => Ok(()),
            c => Err(tonic::Status::internal(format!(
                "`true` exited with {c}: {}",
                String::from_utf8_lossy(&resp.stderr)
            ))),
        });
        if !rec.record(took, r) {
            break;
        }
    }
    remove_pod(client, &pod.pod_id).await;
    rec.outcome()
}

/// Operations reported by [`concurrent_pods`], in its outcome order.
pub const CONCURRENT_OPS: [&str; 4] = [
    "wall until all run",
    "per pod run+create+start",
    "errors",
    "leftovers after removal",
];

/// Starts `pods` pods at once (RunPodSandbox + CreateContainer +
/// StartContainer each, every pod on its own task over the same connection),
/// then removes them all and counts what is left: pods and containers still
/// listed, plus the runtime's helper processes (`procs`, when known) still
/// alive 10 s later.
pub async fn concurrent_pods(
    client: &mut Cri,
    image: &str,
    log_dir: &std::path::Path,
    pods: usize,
    procs: Option<&crate::procmem::RuntimeProcs>,
) -> Vec<Outcome> {
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..pods {
        let mut c = client.clone();
        let (image, log_dir) = (image.to_string(), log_dir.to_path_buf());
        tasks.spawn(async move {
            let t = Instant::now();
            let r = start_sleeper_pod(&mut c, &format!("conc-{i}"), &image, &log_dir).await;
            (t.elapsed(), r)
        });
    }
    let mut per_pod = Vec::new();
    let mut errors = Vec::new();
    let mut running = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((took, Ok(p))) => {
                per_pod.push(took);
                running.push(p);
            }
            Ok((_, Err(e))) => errors.push(e),
            Err(e) => errors.push(format!("task: {e}")),
        }
    }
    let wall = start.elapsed();
    if let Some(e) = errors.first() {
        eprintln!("concurrent-pods: {} errors, first: {e}", errors.len());
    }
    for p in &running {
        remove_pod(client, &p.pod_id).await;
    }
    let leftovers = leftovers(client, procs).await;
    vec![
        Outcome::Value(wall.as_secs_f64() * 1000.0, Unit::Ms),
        if per_pod.is_empty() {
            Outcome::Failed(errors.first().cloned().unwrap_or_default())
        } else {
            Outcome::Samples(per_pod)
        },
        Outcome::Value(errors.len() as f64, Unit::Count),
        leftovers,
    ]
}

/// Pods and containers still listed, plus helper processes still alive
/// (waiting up to 10 s for them: shims and monitors exit asynchronously).
async fn leftovers(client: &mut Cri, procs: Option<&crate::procmem::RuntimeProcs>) -> Outcome {
    let pods = client
        .runtime
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await;
    let containers = client
        .runtime
        .list_containers(cri::ListContainersRequest { filter: None })
        .await;
    let (pods, containers) = match (pods, containers) {
        (Ok(p), Ok(c)) => (p.into_inner().items.len(), c.into_inner().containers.len()),
        (Err(s), _) | (_, Err(s)) => {
            return Outcome::Failed(format!(
                "listing leftovers: {:?}: {}",
                s.code(),
                s.message()
            ))
        }
    };
    let mut helpers = 0;
    if let Some(procs) = procs {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            helpers = procs.helpers().len();
            if helpers == 0 || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    if pods + containers + helpers > 0 {
        eprintln!("leftovers: {pods} pods, {containers} containers, {helpers} helper processes");
    }
    Outcome::Value((pods + containers + helpers) as f64, Unit::Count)
}

/// Operations reported by [`memory`], in its outcome order.
pub const MEMORY_OPS: [&str; 6] = [
    "daemon RSS, idle",
    "daemon RSS, N pods",
    "RSS sum / container",
    "Pss sum / container",
    "private sum / container",
    "processes counted",
];

/// Memory of the runtime `procs`: the daemon's RSS idle (image pulled, no
/// pods), then with `pods` running pods of one [`SLEEPER`] container each the
/// daemon's RSS and the RSS, Pss and private-memory sums over all of the runtime's processes
/// (see [`crate::procmem`]) divided by the number of running containers. The
/// pods are removed at the end.
pub async fn memory(
    client: &mut Cri,
    image: &str,
    log_dir: &std::path::Path,
    pods: usize,
    procs: &crate::procmem::RuntimeProcs,
) -> Vec<Outcome> {
    use crate::procmem;
    let mib = |kib: u64| Outcome::Value(kib as f64 / 1024.0, Unit::MiB);
    let Some(idle) = procmem::rss_kib(procs.daemon_pid) else {
        let e = Outcome::Failed(format!("daemon pid {} not found", procs.daemon_pid));
        return MEMORY_OPS.iter().map(|_| e.clone()).collect();
    };
    let mut running = Vec::new();
    let mut error = None;
    for i in 0..pods {
        match start_sleeper_pod(client, &format!("mem-{i}"), image, log_dir).await {
            Ok(p) => running.push(p),
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    let out = match error {
        Some(e) => {
            let e = Outcome::Failed(format!("starting pod {}: {e}", running.len()));
            let mut v = vec![mib(idle)];
            v.extend(MEMORY_OPS[1..].iter().map(|_| e.clone()));
            v
        }
        None => {
            // Let the helpers settle (monitors re-exec after create; shims
            // start their pause process) before reading.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let all = procmem::memory_of(&procs.all());
            let loaded = procmem::rss_kib(procs.daemon_pid).unwrap_or(0);
            let n = running.len().max(1) as u64;
            vec![
                mib(idle),
                mib(loaded),
                mib(all.rss_kib / n),
                mib(all.pss_kib / n),
                mib(all.private_kib / n),
                Outcome::Value(all.processes as f64, Unit::Count),
            ]
        }
    };
    for p in &running {
        remove_pod(client, &p.pod_id).await;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Outcome {
        Outcome::Samples(v.iter().map(|m| Duration::from_millis(*m)).collect())
    }

    #[test]
    fn quantiles_use_nearest_rank() {
        let o = ms(&[5, 1, 4, 2, 3, 6, 7, 8, 9, 10]);
        assert_eq!(o.quantile(0.5), Some(Duration::from_millis(5)));
        assert_eq!(o.quantile(0.95), Some(Duration::from_millis(10)));
        assert_eq!(o.quantile(1.0), Some(Duration::from_millis(10)));
        assert_eq!(ms(&[7]).quantile(0.5), Some(Duration::from_millis(7)));
        assert_eq!(ms(&[]).quantile(0.5), None);
    }

    #[test]
    fn ratio_and_summaries() {
        assert_eq!(p50_ratio(&ms(&[10, 10]), &ms(&[20, 20])), Some(0.5));
        assert_eq!(p50_ratio(&Outcome::Unimplemented, &ms(&[1])), None);
        assert_eq!(
            Outcome::Unimplemented.summary("berthd"),
            "n/a (berthd: UNIMPLEMENTED)"
        );
        assert_eq!(ms(&[1, 2, 3]).summary("x"), "2.0 / 3.0 / 3.0 (n=3)");
        let mib = |v| Outcome::Value(v, Unit::MiB);
        assert_eq!(p50_ratio(&mib(1.0), &mib(4.0)), Some(0.25));
        assert_eq!(p50_ratio(&mib(1.0), &mib(0.0)), None);
        assert_eq!(p50_ratio(&mib(1.0), &Outcome::Value(1.0, Unit::Ms)), None);
        assert_eq!(mib(1.5).summary("x"), "1.50 MiB");
        assert_eq!(Outcome::Value(3.0, Unit::Count).summary("x"), "3");
    }

    #[test]
    fn recorder_reports_unimplemented_only_without_samples() {
        let mut r = Recorder::default();
        r.record(Duration::ZERO, Err(tonic::Status::unimplemented("no")));
        assert!(matches!(r.outcome(), Outcome::Unimplemented));
        let mut r = Recorder::default();
        r.record(Duration::from_millis(1), Ok(()));
        r.record(Duration::ZERO, Err(tonic::Status::internal("boom")));
        assert!(matches!(r.outcome(), Outcome::Failed(m) if m.contains("boom")));
        assert!(matches!(Recorder::default().outcome(), Outcome::NotRun));
    }
}

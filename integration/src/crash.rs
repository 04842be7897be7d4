//! Crash consistency: pod lifecycles driven the way a kubelet drives them while
//! berthd is SIGKILLed at random points, restarted, and the client retries.
//!
//! One cycle is a kubelet's pod lifecycle on one pod: RemoveImage + PullImage
//! of a layered image, RunPodSandbox, CreateContainer, StartContainer,
//! ExecSync, StopContainer, StopPodSandbox, RemovePodSandbox. In every cycle
//! one step (chosen at random) is sent, berthd is killed after a random delay
//! (often mid-call, sometimes just after it answered), restarted on the same
//! dirs, and then:
//!
//! - **nothing lost**: a "survivor" pod started before the first kill keeps a
//!   running container, listed and running after every restart; every object
//!   the client saw acknowledged is listed in the state it was acknowledged in
//!   (or the state of the call that was in flight);
//! - **nothing stale**: every listed pod and container is one the client knows,
//!   or the product of the call that was in flight (which the client then
//!   adopts or removes, as a kubelet does on its next sync);
//! - **nothing leaked**: once a cycle's pod is removed, no mount, cgroup,
//!   namespace pin, state dir or monitor process of its ids remains, and at the
//!   end no pod address or veth remains on the bridge and the snapshot dirs are
//!   those of the images still present.
//!
//! The client retries a failed step until it succeeds, with the kubelet's
//! answers to ALREADY_EXISTS (adopt a ready pod or a created container of that
//! name, otherwise remove it and retry) and to a start that did not take
//! (remove the container and create it anew).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_proto::v1::*;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use tonic::{Code, Status};

use crate::berthd::Berthd;
use crate::bridge::TestBridge;
use crate::client::Cri;
use crate::error::{Error, Result};

/// The steps of one cycle, in order.
const STEPS: [Step; 8] = [
    Step::Pull,
    Step::RunPod,
    Step::Create,
    Step::Start,
    Step::Exec,
    Step::StopContainer,
    Step::StopPod,
    Step::RemovePod,
];

/// One CRI call of a cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    Pull,
    RunPod,
    Create,
    Start,
    Exec,
    StopContainer,
    StopPod,
    RemovePod,
}

/// What a crash run does.
#[derive(Clone, Debug)]
pub struct CrashOptions {
    /// Cycles, one kill each.
    pub kills: usize,
    /// Seed of the choice of step and delay (printed, so a failure replays).
    pub seed: u64,
    /// The kill lands 0..=`max_delay` after the call is sent.
    pub max_delay: Duration,
    /// The image containers run (`sleep` and `echo` from busybox).
    pub busybox: String,
    /// The image removed and pulled again in each cycle.
    pub pulled: String,
    /// Parent of the pods' log directories.
    pub log_dir: PathBuf,
}

/// What a crash run saw. A run is clean when `lost`, `stale` and `leaked` are
/// empty.
#[derive(Clone, Debug, Default)]
pub struct CrashReport {
    pub kills: usize,
    /// Kills per step the kill was aimed at.
    pub kills_by_step: BTreeMap<String, usize>,
    /// Kills that landed before the call had answered.
    pub mid_call: usize,
    /// Calls the client sent again after a restart.
    pub retries: usize,
    /// Objects the call in flight left behind that the client adopted or removed.
    pub adopted: usize,
    /// Acknowledged state missing after a restart.
    pub lost: Vec<String>,
    /// Listed objects that the client did not make, or in a state that cannot be.
    pub stale: Vec<String>,
    /// Resources of removed objects still on the machine.
    pub leaked: Vec<String>,
    /// Total time spent restarting berthd (until it answered).
    pub restart_time: Duration,
}

impl CrashReport {
    /// True when nothing was lost, stale or leaked.
    pub fn is_clean(&self) -> bool {
        self.lost.is_empty() && self.stale.is_empty() && self.leaked.is_empty()
    }
}

/// The objects of the current cycle, as far as the client knows them.
#[derive(Default)]
struct Cycle {
    name: String,
    pod: Option<String>,
    container: Option<String>,
    /// The pod's attempt (raised when a half-made pod had to be removed).
    attempt: u32,
    /// Every id this cycle ever held, for the leak check.
    ids: BTreeSet<String>,
}

/// Runs `options.kills` cycles against `berthd`; `net` is the bridge its CNI
/// config uses (for the address and veth check), if any.
pub async fn run(
    berthd: &mut Berthd,
    net: Option<&TestBridge>,
    options: &CrashOptions,
) -> Result<CrashReport> {
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let mut report = CrashReport::default();
    let mut cri = berthd.client().await?;

    // The survivor: one pod whose container must outlive every crash.
    let survivor_config = pod_config(options, "survivor", 0);
    let survivor_pod = call(
        cri.runtime
            .run_pod_sandbox(run_pod_request(&survivor_config)),
    )
    .await?
    .pod_sandbox_id;
    let survivor = call(cri.runtime.create_container(create_request(
        &survivor_pod,
        &survivor_config,
        options,
    )))
    .await?
    .container_id;
    call(cri.runtime.start_container(StartContainerRequest {
        container_id: survivor.clone(),
    }))
    .await?;
    let snapshots_before = snapshot_dirs(berthd.root_dir());

    for n in 0..options.kills {
        let mut cycle = Cycle {
            name: format!("crash{n}"),
            ..Default::default()
        };
        let target = STEPS[(rng.next_u32() as usize) % STEPS.len()];
        let delay = Duration::from_micros(
            rng.next_u64()
                % (u64::try_from(options.max_delay.as_micros()).unwrap_or(u64::MAX - 1) + 1),
        );
        *report
            .kills_by_step
            .entry(format!("{target:?}"))
            .or_default() += 1;
        for step in STEPS {
            if step == Step::Pull {
                // Removed first, so that the pull has layers to fetch and unpack.
                call(cri.image.remove_image(RemoveImageRequest {
                    image: Some(ImageSpec {
                        image: options.pulled.clone(),
                        ..Default::default()
                    }),
                }))
                .await?;
            }
            if step != target {
                retry(&mut cri, &mut report, &mut cycle, step, options).await?;
                verify_step(&mut cri, &mut report, &cycle, step, options, n).await?;
                continue;
            }
            // Send the call, kill berthd after `delay`, restart, check, then
            // take the answer if it came before the kill or send it again.
            let sent = {
                let mut cri = cri.clone();
                let config = pod_config(options, &cycle.name, cycle.attempt);
                let (pod, container) = (cycle.pod.clone(), cycle.container.clone());
                let options = options.clone();
                tokio::spawn(async move {
                    send(&mut cri, step, &options, &config, pod, container).await
                })
            };
            tokio::time::sleep(delay).await;
            if !sent.is_finished() {
                report.mid_call += 1;
            }
            berthd.kill9()?;
            let answered = sent.await.ok().and_then(|r| r.ok());
            let started = Instant::now();
            berthd.restart().await?;
            report.restart_time += started.elapsed();
            report.kills += 1;
            cri = berthd.client().await?;
            let known = (&survivor_pod, &survivor);
            check_after_restart(&mut cri, &mut report, known, &cycle, step, n).await?;
            match answered {
                Some(outcome) => apply(&mut cycle, outcome),
                None => {
                    report.retries += 1;
                    retry(&mut cri, &mut report, &mut cycle, step, options).await?;
                }
            }
            verify_step(&mut cri, &mut report, &cycle, step, options, n).await?;
        }
        let ids: Vec<&str> = cycle.ids.iter().map(String::as_str).collect();
        for l in berthd.leftovers_of(&ids) {
            report.leaked.push(format!("cycle {n}: {l}"));
        }
    }

    // The survivor is still running, then goes like any pod.
    let s = container_state(&mut cri, &survivor).await?;
    if s != Some(ContainerState::ContainerRunning) {
        report
            .lost
            .push(format!("survivor {survivor} is {s:?} at the end"));
    }
    call(cri.runtime.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: survivor_pod.clone(),
    }))
    .await?;
    call(cri.runtime.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: survivor_pod.clone(),
    }))
    .await?;
    for l in berthd.leftovers(&[&survivor_pod, &survivor]) {
        report.leaked.push(format!("end: {l}"));
    }
    let mounts = berthd.mounts();
    report
        .leaked
        .extend(mounts.into_iter().map(|m| format!("end: mount {m}")));
    if let Some(net) = net {
        report.leaked.extend(
            net.allocations()
                .into_iter()
                .map(|a| format!("end: address {a} still allocated")),
        );
        report
            .leaked
            .extend(net.veths().into_iter().map(|v| format!("end: veth {v}")));
    }
    let snapshots_after = snapshot_dirs(berthd.root_dir());
    for s in snapshots_after.difference(&snapshots_before) {
        report.leaked.push(format!("end: snapshot {s} not before"));
    }
    for s in snapshots_before.difference(&snapshots_after) {
        report
            .lost
            .push(format!("end: snapshot {s} of a present image gone"));
    }
    Ok(report)
}

/// What a call that answered OK gave the client.
enum Outcome {
    Nothing,
    Pod(String),
    Container(String),
}

fn apply(cycle: &mut Cycle, outcome: Outcome) {
    match outcome {
        Outcome::Pod(id) => {
            cycle.ids.insert(id.clone());
            cycle.pod = Some(id);
        }
        Outcome::Container(id) => {
            cycle.ids.insert(id.clone());
            cycle.container = Some(id);
        }
        Outcome::Nothing => {}
    }
}

/// Sends `step` once.
async fn send(
    cri: &mut Cri,
    step: Step,
    options: &CrashOptions,
    config: &PodSandboxConfig,
    pod: Option<String>,
    container: Option<String>,
) -> std::result::Result<Outcome, Status> {
    let pod = pod.unwrap_or_default();
    let container = container.unwrap_or_default();
    match step {
        Step::Pull => cri
            .image
            .pull_image(PullImageRequest {
                image: Some(ImageSpec {
                    image: options.pulled.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .map(|_| Outcome::Nothing),
        Step::RunPod => cri
            .runtime
            .run_pod_sandbox(run_pod_request(config))
            .await
            .map(|r| Outcome::Pod(r.into_inner().pod_sandbox_id)),
        Step::Create => cri
            .runtime
            .create_container(create_request(&pod, config, options))
            .await
            .map(|r| Outcome::Container(r.into_inner().container_id)),
        Step::Start => cri
            .runtime
            .start_container(StartContainerRequest {
                container_id: container,
            })
            .await
            .map(|_| Outcome::Nothing),
        Step::Exec => {
            let r = cri
                .runtime
                .exec_sync(ExecSyncRequest {
                    container_id: container,
                    cmd: vec!["echo".into(), "alive".into()],
                    timeout: 10,
                })
                .await?
                .into_inner();
            if r.stdout != b"alive\n" || r.exit_code != 0 {
                return Err(Status::internal(format!("exec answered {r:?}")));
            }
            Ok(Outcome::Nothing)
        }
        Step::StopContainer => cri
            .runtime
            .stop_container(StopContainerRequest {
                container_id: container,
                timeout: 0,
            })
            .await
            .map(|_| Outcome::Nothing),
        Step::StopPod => cri
            .runtime
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: pod,
            })
            .await
            .map(|_| Outcome::Nothing),
        Step::RemovePod => cri
            .runtime
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: pod,
            })
            .await
            .map(|_| Outcome::Nothing),
    }
}

/// Sends `step` until it succeeds, answering what a half-done earlier attempt
/// left the way a kubelet does.
async fn retry(
    cri: &mut Cri,
    report: &mut CrashReport,
    cycle: &mut Cycle,
    step: Step,
    options: &CrashOptions,
) -> Result<()> {
    for _ in 0..5 {
        let config = pod_config(options, &cycle.name, cycle.attempt);
        let sent = send(
            cri,
            step,
            options,
            &config,
            cycle.pod.clone(),
            cycle.container.clone(),
        )
        .await;
        match sent {
            Ok(outcome) => {
                apply(cycle, outcome);
                return Ok(());
            }
            Err(status) if status.code() == Code::AlreadyExists && step == Step::RunPod => {
                // The killed call made the pod: adopt it if it is ready,
                // otherwise remove it and make the next attempt.
                for p in list_pods(cri).await? {
                    let meta = p.metadata.clone().unwrap_or_default();
                    if meta.name != cycle.name {
                        continue;
                    }
                    cycle.ids.insert(p.id.clone());
                    report.adopted += 1;
                    if p.state == PodSandboxState::SandboxReady as i32 {
                        cycle.pod = Some(p.id);
                        return Ok(());
                    }
                    remove_pod(cri, &p.id).await?;
                    cycle.attempt += 1;
                }
            }
            Err(status) if status.code() == Code::AlreadyExists && step == Step::Create => {
                let pod = cycle.pod.clone().unwrap_or_default();
                for c in containers_of(cri, &pod).await? {
                    cycle.ids.insert(c.id.clone());
                    report.adopted += 1;
                    if c.state == ContainerState::ContainerCreated as i32 {
                        cycle.container = Some(c.id);
                        return Ok(());
                    }
                    remove_container(cri, &c.id).await?;
                }
            }
            Err(_) if step == Step::Start => {
                // The killed start may have run the container already.
                let id = cycle.container.clone().unwrap_or_default();
                match container_state(cri, &id).await? {
                    Some(ContainerState::ContainerRunning) => return Ok(()),
                    Some(ContainerState::ContainerCreated) => {}
                    state => {
                        // A start that did not take: kubelet makes the
                        // container anew.
                        report.adopted += 1;
                        if state.is_some() {
                            remove_container(cri, &id).await?;
                        }
                        cycle.container = None;
                        Box::pin(retry(cri, report, cycle, Step::Create, options)).await?;
                    }
                }
            }
            Err(status) => {
                return Err(Error::Crash(format!(
                    "{} {step:?} after restart: {status}",
                    cycle.name
                )))
            }
        }
        report.retries += 1;
    }
    Err(Error::Crash(format!(
        "{} {step:?}: no success after 5 attempts",
        cycle.name
    )))
}

/// After a restart: the survivor runs, and every listed object is known or the
/// in-flight call's product, in a state the acknowledged calls allow.
async fn check_after_restart(
    cri: &mut Cri,
    report: &mut CrashReport,
    (survivor_pod, survivor): (&String, &String),
    cycle: &Cycle,
    step: Step,
    n: usize,
) -> Result<()> {
    let at = format!("kill {n} ({step:?})");
    let pods = list_pods(cri).await?;
    let containers = list_containers(cri, None).await?;
    let pod_state = |id: &String| pods.iter().find(|p| &p.id == id).map(|p| p.state);
    let container_state = |id: &String| containers.iter().find(|c| &c.id == id).map(|c| c.state);
    use ContainerState::*;
    use PodSandboxState::*;
    if container_state(survivor) != Some(ContainerRunning as i32) {
        report.lost.push(format!(
            "{at}: survivor container {survivor} is {:?}",
            container_state(survivor)
        ));
    }
    if pod_state(survivor_pod) != Some(SandboxReady as i32) {
        report.lost.push(format!("{at}: survivor pod not ready"));
    }
    for p in &pods {
        let name = p.metadata.clone().unwrap_or_default().name;
        let known = &p.id == survivor_pod || Some(&p.id) == cycle.pod.as_ref();
        let in_flight = step == Step::RunPod && name == cycle.name;
        if !known && !in_flight {
            report
                .stale
                .push(format!("{at}: pod {} ({name}) listed", p.id));
        }
    }
    for c in &containers {
        let known = &c.id == survivor || Some(&c.id) == cycle.container.as_ref();
        let in_flight = step == Step::Create && Some(&c.pod_sandbox_id) == cycle.pod.as_ref();
        if !known && !in_flight {
            report.stale.push(format!(
                "{at}: container {} of pod {} listed",
                c.id, c.pod_sandbox_id
            ));
        }
    }
    // What the acknowledged calls allow: the state the previous step left or,
    // for the call in flight, the one it makes (None: not listed).
    if let Some(id) = &cycle.container {
        let allowed: &[Option<ContainerState>] = match step {
            Step::Pull | Step::RunPod | Step::Create => &[],
            Step::Start => &[Some(ContainerCreated), Some(ContainerRunning)],
            Step::Exec => &[Some(ContainerRunning)],
            Step::StopContainer => &[Some(ContainerRunning), Some(ContainerExited)],
            Step::StopPod => &[Some(ContainerExited)],
            Step::RemovePod => &[Some(ContainerExited), None],
        };
        let state = container_state(id).and_then(|s| ContainerState::try_from(s).ok());
        if !allowed.contains(&state) {
            report.lost.push(format!(
                "{at}: container {id} is {state:?}, allowed {allowed:?}"
            ));
        }
    }
    if let Some(id) = &cycle.pod {
        let allowed: &[Option<PodSandboxState>] = match step {
            Step::Pull | Step::RunPod => &[],
            Step::Create | Step::Start | Step::Exec | Step::StopContainer => &[Some(SandboxReady)],
            Step::StopPod => &[Some(SandboxReady), Some(SandboxNotready)],
            Step::RemovePod => &[Some(SandboxNotready), None],
        };
        let state = pod_state(id).and_then(|s| PodSandboxState::try_from(s).ok());
        if !allowed.contains(&state) {
            report
                .lost
                .push(format!("{at}: pod {id} is {state:?}, allowed {allowed:?}"));
        }
    }
    Ok(())
}

/// After `step` succeeded: the daemon agrees with what the client was told.
async fn verify_step(
    cri: &mut Cri,
    report: &mut CrashReport,
    cycle: &Cycle,
    step: Step,
    options: &CrashOptions,
    n: usize,
) -> Result<()> {
    let problem = match step {
        Step::Pull => {
            let s = cri
                .image
                .image_status(ImageStatusRequest {
                    image: Some(ImageSpec {
                        image: options.pulled.clone(),
                        ..Default::default()
                    }),
                    verbose: false,
                })
                .await
                .map_err(Error::rpc("ImageStatus"))?
                .into_inner();
            s.image
                .is_none()
                .then(|| "the pulled image is not present".to_string())
        }
        Step::Start | Step::Exec => {
            let id = cycle.container.clone().unwrap_or_default();
            let s = container_state(cri, &id).await?;
            (s != Some(ContainerState::ContainerRunning))
                .then(|| format!("container {id} is {s:?}, not running"))
        }
        Step::StopContainer => {
            let id = cycle.container.clone().unwrap_or_default();
            let s = container_state(cri, &id).await?;
            (s != Some(ContainerState::ContainerExited))
                .then(|| format!("container {id} is {s:?} after stop"))
        }
        Step::RemovePod => {
            let left: Vec<String> = list_pods(cri)
                .await?
                .into_iter()
                .filter(|p| cycle.ids.contains(&p.id))
                .map(|p| p.id)
                .collect();
            (!left.is_empty()).then(|| format!("pods {left:?} still listed after removal"))
        }
        Step::RunPod | Step::Create | Step::StopPod => None,
    };
    if let Some(p) = problem {
        report.stale.push(format!("cycle {n} after {step:?}: {p}"));
    }
    Ok(())
}

fn pod_config(options: &CrashOptions, name: &str, attempt: u32) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "crash".into(),
            attempt,
        }),
        hostname: name.into(),
        log_directory: options.log_dir.join(name).display().to_string(),
        ..Default::default()
    }
}

fn run_pod_request(config: &PodSandboxConfig) -> RunPodSandboxRequest {
    RunPodSandboxRequest {
        config: Some(config.clone()),
        runtime_handler: String::new(),
    }
}

fn create_request(
    pod: &str,
    config: &PodSandboxConfig,
    options: &CrashOptions,
) -> CreateContainerRequest {
    CreateContainerRequest {
        pod_sandbox_id: pod.into(),
        config: Some(crate::env::container_config(
            "sleeper",
            &options.busybox,
            &["sleep", "3600"],
        )),
        sandbox_config: Some(config.clone()),
    }
}

async fn call<T>(
    call: impl std::future::Future<Output = std::result::Result<tonic::Response<T>, Status>>,
) -> Result<T> {
    call.await
        .map(tonic::Response::into_inner)
        .map_err(|s| Error::Crash(format!("setup call failed: {s}")))
}

async fn list_pods(cri: &mut Cri) -> Result<Vec<PodSandbox>> {
    Ok(cri
        .runtime
        .list_pod_sandbox(ListPodSandboxRequest { filter: None })
        .await
        .map_err(Error::rpc("ListPodSandbox"))?
        .into_inner()
        .items)
}

async fn list_containers(cri: &mut Cri, filter: Option<ContainerFilter>) -> Result<Vec<Container>> {
    Ok(cri
        .runtime
        .list_containers(ListContainersRequest { filter })
        .await
        .map_err(Error::rpc("ListContainers"))?
        .into_inner()
        .containers)
}

/// The containers of `pod`.
async fn containers_of(cri: &mut Cri, pod: &str) -> Result<Vec<Container>> {
    let filter = ContainerFilter {
        pod_sandbox_id: pod.into(),
        ..Default::default()
    };
    list_containers(cri, Some(filter)).await
}

async fn container_state(cri: &mut Cri, id: &str) -> Result<Option<ContainerState>> {
    match cri
        .runtime
        .container_status(ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        })
        .await
    {
        Ok(r) => Ok(r
            .into_inner()
            .status
            .and_then(|s| ContainerState::try_from(s.state).ok())),
        Err(s) if s.code() == Code::NotFound => Ok(None),
        Err(s) => Err(Error::Crash(format!("ContainerStatus {id}: {s}"))),
    }
}

async fn remove_pod(cri: &mut Cri, id: &str) -> Result<()> {
    call(cri.runtime.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: id.into(),
    }))
    .await?;
    call(cri.runtime.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: id.into(),
    }))
    .await?;
    Ok(())
}

async fn remove_container(cri: &mut Cri, id: &str) -> Result<()> {
    call(cri.runtime.remove_container(RemoveContainerRequest {
        container_id: id.into(),
    }))
    .await?;
    Ok(())
}

/// The snapshot dirs of the store (`<root>/snapshots/<chain id>`).
fn snapshot_dirs(root: &Path) -> BTreeSet<String> {
    std::fs::read_dir(root.join("snapshots"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

//! Replaying recorded kubelet CRI traffic against a real berthd.
//!
//! A trace (`integration/kubelet-traces/*.jsonl`, format in its README) holds
//! every call a kubelet made to a reference runtime with the answers it got.
//! [`replay_file`] starts a registry holding the images the trace names (under
//! those names, reached through registry mirrors), a CNI bridge and berthd,
//! then sends every call in `seq` order:
//!
//! - values of the recorded run are mapped to this one ([`mapping`]): ids and
//!   image digests learned from the answers, host paths into a directory of
//!   the replay's own, the cgroup parents under a cgroup root of its own;
//! - idle time is dropped; a call the reference was still running when later
//!   calls arrived (a stop with a grace period, a pull) runs in the background
//!   and is awaited before the first call that came after its answer, so the
//!   calls it overlapped see what the kubelet saw;
//! - each answer is held to the reference's ([`compare`]): same code, the
//!   fields a kubelet reads, containers reaching the recorded states (asking
//!   again while Berth is behind), except where [`exceptions`] says why not;
//! - stream URLs are used ([`streams`]);
//! - after the trace, nothing of the pods it removed may be left.
//!
//! Nothing here is specific to one trace: a new recording dropped into the
//! directory replays as it is.

pub mod compare;
pub mod exceptions;
pub mod invoke;
pub mod mapping;
pub mod streams;
pub mod trace;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::bridge::TestBridge;
use crate::client::Cri;
use crate::env::{Cni, TestEnv, TestEnvOptions};
use crate::error::{Error, Result};
use compare::{Ctx, Verdict};
use invoke::{code_name, Answer};
use mapping::Mapper;
use trace::{Call, Timeline, Trace};

/// The traces shipped with the repository.
pub const TRACES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/kubelet-traces");

/// How long Berth may stay behind a recorded state (a container still to
/// exit, a list still to change) before that is a failure.
const CATCH_UP: Duration = Duration::from_secs(60);
/// A reference call this long that later calls overlapped runs in the background.
const BACKGROUND_MS: f64 = 300.0;
/// Any one call's limit.
const CALL_LIMIT: Duration = Duration::from_secs(180);

/// What a replay found.
#[derive(Debug, Default)]
pub struct Report {
    pub trace: String,
    pub calls: usize,
    /// Calls asked again while Berth caught up with a recorded state.
    pub retries: usize,
    /// Calls not sent because an earlier failure left an id they name unmapped.
    pub skipped: usize,
    /// Distinct failures, each with the seqs it happened at.
    pub failures: Vec<String>,
    /// Objects of removed pods still present afterwards.
    pub leaks: Vec<String>,
    /// Exceptions applied (call and reason).
    pub exceptions: Vec<String>,
    pub elapsed: Duration,
}

impl Report {
    /// True when every call matched and nothing leaked.
    pub fn ok(&self) -> bool {
        self.failures.is_empty() && self.leaks.is_empty()
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{}: {} calls in {:.1?}, {} retries, {} skipped, {} failures, {} leaks",
            self.trace,
            self.calls,
            self.elapsed,
            self.retries,
            self.skipped,
            self.failures.len(),
            self.leaks.len()
        )?;
        for e in &self.exceptions {
            writeln!(f, "  exception: {e}")?;
        }
        for x in self.failures.iter().take(60) {
            writeln!(f, "  FAIL {x}")?;
        }
        for x in &self.leaks {
            writeln!(f, "  LEAK {x}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Default, Clone)]
struct PodInfo {
    hostname: String,
    ports: Vec<u16>,
    ip: Option<String>,
    removed: bool,
}

#[derive(Debug, Default, Clone)]
struct CtrInfo {
    pod: String,
    command: String,
    image: String,
}

/// The CNI plugins after the bridge: hostPort support, as on the recorded node.
fn portmap() -> Value {
    serde_json::json!({"type": "portmap", "capabilities": {"portMappings": true}, "snat": true})
}

/// Registries the traces pull from, all mirrored to the test registry.
const MIRRORED: &[&str] = &["registry.k8s.io", "127.0.0.1:5000"];

/// Replays one trace file against a fresh registry, bridge and berthd.
pub async fn replay_file(path: &Path) -> Result<Report> {
    let trace = Trace::load(path)?;
    let env = TestEnv::start_with(TestEnvOptions {
        cni: Cni::Bridge(vec![portmap()]),
        ..Default::default()
    })
    .await?;
    let client = env.registry.client()?;
    for (repo, tag, image) in crate::test_images::kubelet_trace_images()? {
        client.push_image(repo, tag, image).await?;
    }
    let certs_d = env.certs_d();
    for host in MIRRORED {
        let dir = certs_d.join(host);
        std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        let text = format!(
            "server = \"https://{host}\"\n\n[host.\"{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            env.registry.url()
        );
        let file = dir.join("hosts.toml");
        std::fs::write(&file, text).map_err(Error::io(&file))?;
    }
    let work = tempfile::tempdir().map_err(Error::io("tempdir"))?;
    let mut run = Run::new(&env, &trace, work.path())?;
    let started = Instant::now();
    run.replay().await;
    run.report.elapsed = started.elapsed();
    if let Some(bridge) = &env.bridge {
        run.report.leaks = run.leaks(&env, bridge);
    }
    run.teardown().await;
    Ok(run.report)
}

struct Run<'a> {
    cri: Cri,
    trace: &'a Trace,
    timeline: Timeline,
    mapper: Mapper,
    work: PathBuf,
    cgroup_root: String,
    shared_mounts: Vec<PathBuf>,
    pods: HashMap<String, PodInfo>,
    containers: HashMap<String, CtrInfo>,
    failures: Vec<(String, Vec<u64>)>,
    report: Report,
    state_dir: PathBuf,
    root_dir: PathBuf,
}

type Pending = (
    usize,
    Value,
    tokio::task::JoinHandle<std::result::Result<Answer, String>>,
);

impl<'a> Run<'a> {
    fn new(env: &TestEnv, trace: &'a Trace, work: &Path) -> Result<Run<'a>> {
        let mut mapper = Mapper::default();
        let cgroup_root = format!(
            "berth-replay-{}-{}",
            std::process::id(),
            work.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        // The recorded kubelet's directories, and the containerd root that
        // ImageFsInfo names, become directories of this replay.
        for (recorded, ours) in [
            ("/var/lib/kubelet", work.join("kubelet")),
            ("/var/log/pods", work.join("pods")),
            ("/srv/hostpath-demo", work.join("hostpath-demo")),
            ("/var/lib/containerd", env.berthd.root_dir().to_path_buf()),
        ] {
            mapper.prefix(recorded, &ours.display().to_string());
        }
        mapper.prefix("/kubepods", &format!("/{cgroup_root}/kubepods"));
        Ok(Run {
            cri: env.cri.clone(),
            trace,
            timeline: Timeline::of(&trace.calls),
            mapper,
            work: work.into(),
            cgroup_root,
            shared_mounts: Vec::new(),
            pods: HashMap::new(),
            containers: HashMap::new(),
            failures: Vec::new(),
            report: Report {
                trace: trace.name(),
                calls: trace.calls.len(),
                ..Default::default()
            },
            state_dir: env.berthd.state_dir().to_path_buf(),
            root_dir: env.berthd.root_dir().to_path_buf(),
        })
    }

    fn fail(&mut self, call: &Call, msg: String) {
        let msg = format!("{}: {msg}", call.rpc());
        match self.failures.iter_mut().find(|(m, _)| *m == msg) {
            Some((_, seqs)) => seqs.push(call.seq),
            None => self.failures.push((msg, vec![call.seq])),
        }
        self.report.failures = self
            .failures
            .iter()
            .map(|(m, seqs)| {
                let shown: Vec<String> = seqs.iter().take(5).map(|s| s.to_string()).collect();
                let more = if seqs.len() > 5 {
                    format!(" and {} more", seqs.len() - 5)
                } else {
                    String::new()
                };
                format!("seq {}{more}: {m}", shown.join(","))
            })
            .collect();
    }

    async fn replay(&mut self) {
        let calls = &self.trace.calls;
        let mut pending: Vec<Pending> = Vec::new();
        for (i, call) in calls.iter().enumerate() {
            let (done, keep): (Vec<Pending>, Vec<Pending>) = pending
                .into_iter()
                .partition(|p| calls[p.0].end_ms() <= call.t_ms);
            pending = keep;
            for p in done {
                self.finish(p).await;
            }
            if let Some(id) = self.unresolved(call) {
                self.report.skipped += 1;
                let _ = id;
                continue;
            }
            let req = self.mapper.map(&call.request);
            if let Err(e) = self.prepare(call, &req) {
                self.fail(call, format!("preparing the host for it: {e}"));
                continue;
            }
            let fut = invoke::invoke(
                self.cri.clone(),
                call.rpc().to_string(),
                req.clone(),
                call.response.clone(),
            );
            let overlapped = calls[i + 1..].iter().any(|c| c.t_ms < call.end_ms());
            if call.duration_ms >= BACKGROUND_MS && overlapped {
                pending.push((i, req, tokio::spawn(fut)));
            } else {
                let answer = match tokio::time::timeout(CALL_LIMIT, fut).await {
                    Ok(a) => a,
                    Err(_) => Err(format!("no answer within {CALL_LIMIT:?}")),
                };
                self.check(call, &req, answer).await;
            }
        }
        for p in pending {
            self.finish(p).await;
        }
    }

    async fn finish(&mut self, (i, req, handle): Pending) {
        let call = &self.trace.calls[i];
        let answer = match tokio::time::timeout(CALL_LIMIT, handle).await {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => Err(format!("call task failed: {e}")),
            Err(_) => Err(format!("no answer within {CALL_LIMIT:?}")),
        };
        self.check(call, &req, answer).await;
    }

    /// An id the call names that an earlier failure left unmapped.
    fn unresolved(&self, call: &Call) -> Option<String> {
        ["container_id", "pod_sandbox_id"].iter().find_map(|k| {
            let v = call.req_str(k);
            let known = self.timeline.ops.contains_key(v);
            (known && self.mapper.ours(v).is_none()).then(|| v.to_string())
        })
    }

    /// Creates what the recorded kubelet had made before the call: the host
    /// side of a container's mounts (`/etc/hosts` and termination-log files,
    /// volume directories) and the pod log directory.
    fn prepare(&mut self, call: &Call, req: &Value) -> std::result::Result<(), String> {
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |e: std::io::Error| format!("{}: {e}", p.display())
        };
        let config = match call.rpc() {
            "RunPodSandbox" | "CreateContainer" => {
                let sandbox = if call.rpc() == "RunPodSandbox" {
                    &req["config"]
                } else {
                    &req["sandbox_config"]
                };
                if let Some(d) = sandbox["log_directory"].as_str() {
                    std::fs::create_dir_all(d).map_err(io(Path::new(d)))?;
                }
                &req["config"]
            }
            _ => return Ok(()),
        };
        for m in config["mounts"].as_array().into_iter().flatten() {
            let host = PathBuf::from(m["host_path"].as_str().unwrap_or(""));
            if !host.starts_with(&self.work) || host.exists() {
                continue;
            }
            let ctr_path = m["container_path"].as_str().unwrap_or("");
            let is_file = ctr_path == "/etc/hosts"
                || ctr_path == "/dev/termination-log"
                || config["annotations"]["io.kubernetes.container.terminationMessagePath"]
                    .as_str()
                    .is_some_and(|p| p == ctr_path);
            if let Some(parent) = host.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            if is_file {
                let text = if ctr_path == "/etc/hosts" {
                    "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                } else {
                    ""
                };
                std::fs::write(&host, text).map_err(io(&host))?;
                continue;
            }
            std::fs::create_dir_all(&host).map_err(io(&host))?;
            if host.to_string_lossy().contains("/kubernetes.io~empty-dir/") {
                // The kubelet makes emptyDir volumes world-writable.
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o777))
                    .map_err(io(&host))?;
            }
            let propagation = m["propagation"].as_str().unwrap_or("");
            if !propagation.is_empty() && propagation != "PROPAGATION_PRIVATE" {
                // A hostPath volume of the recording: one file, on a shared
                // mount as the recorded host directory was.
                std::fs::write(host.join("hello"), "hello from the host\n").map_err(io(&host))?;
                let d = host.display().to_string();
                for args in [vec!["--bind", &d, &d], vec!["--make-shared", &d]] {
                    let st = std::process::Command::new("mount")
                        .args(&args)
                        .status()
                        .map_err(|e| format!("mount {args:?}: {e}"))?;
                    if !st.success() {
                        return Err(format!("mount {args:?}: {st}"));
                    }
                }
                self.shared_mounts.push(host.clone());
            }
        }
        Ok(())
    }

    async fn check(
        &mut self,
        call: &Call,
        req: &Value,
        answer: std::result::Result<Answer, String>,
    ) {
        let answer = match answer {
            Ok(a) => a,
            Err(e) => return self.fail(call, e),
        };
        let rpc = call.rpc();
        match (answer.ours, call.code == "OK") {
            (Err(s), true) => self.fail(
                call,
                format!(
                    "the reference answered OK, Berth {}: {}",
                    code_name(&s),
                    s.message()
                ),
            ),
            (Err(s), false) => {
                if code_name(&s) != call.code {
                    self.fail(
                        call,
                        format!(
                            "the reference answered {} ({}), Berth {}: {}",
                            call.code,
                            call.details,
                            code_name(&s),
                            s.message()
                        ),
                    );
                }
            }
            (Ok(ours), false) => match exceptions::find(rpc, &call.code) {
                Some(ex) => match (ex.check)(&ours) {
                    Ok(()) => {
                        let note = format!("{rpc} (reference {}): {}", call.code, ex.reason);
                        if !self.report.exceptions.contains(&note) {
                            self.report.exceptions.push(note);
                        }
                    }
                    Err(e) => self.fail(call, format!("exception for {rpc}: {e}")),
                },
                None => self.fail(
                    call,
                    format!(
                        "the reference answered {} ({}), Berth OK: {ours}",
                        call.code, call.details
                    ),
                ),
            },
            (Ok(ours), true) => {
                let reference = answer.reference.unwrap_or(Value::Null);
                self.ok_call(call, req, reference, ours).await;
            }
        }
    }

    async fn ok_call(&mut self, call: &Call, req: &Value, reference: Value, mut ours: Value) {
        if let Err(e) = self.learn(call, req, &reference, &ours) {
            return self.fail(call, e);
        }
        let rpc = call.rpc();
        let deadline = Instant::now() + CATCH_UP;
        let mut reference = reference;
        if rpc == "ContainerStatus" {
            self.user_specified_image(&mut reference, &ours);
        }
        loop {
            let expected = self.mapper.map(&reference);
            let mut ctx = Ctx {
                call,
                timeline: &self.timeline,
                mapper: &mut self.mapper,
            };
            match compare::compare(rpc, &expected, &ours, &mut ctx) {
                Verdict::Same => break,
                Verdict::Wrong(e) => return self.fail(call, e),
                Verdict::Behind(e) => {
                    if Instant::now() > deadline {
                        return self.fail(call, format!("still behind after {CATCH_UP:?}: {e}"));
                    }
                    self.report.retries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let again =
                        invoke::invoke(self.cri.clone(), rpc.to_string(), req.clone(), None).await;
                    match again.map(|a| a.ours) {
                        Ok(Ok(v)) => ours = v,
                        Ok(Err(s)) => {
                            return self.fail(
                                call,
                                format!("asked again, Berth {}: {}", code_name(&s), s.message()),
                            )
                        }
                        Err(e) => return self.fail(call, e),
                    }
                }
            }
        }
        if let Err(e) = self.use_stream(call, req, &ours).await {
            self.fail(call, e);
        }
    }

    /// Applies [`exceptions::FIELD_EXCEPTIONS`]' ContainerStatus entry: the
    /// status names the image the pod spec gave.
    fn user_specified_image(&mut self, reference: &mut Value, ours: &Value) {
        let id = ours["status"]["id"].as_str().unwrap_or("");
        let Some(ctr) = self.containers.get(id) else {
            return;
        };
        let slot = &mut reference["status"]["image"]["image"];
        if ctr.image.is_empty() || slot.as_str() == Some(ctr.image.as_str()) || slot.is_null() {
            return;
        }
        *slot = Value::String(ctr.image.clone());
        let (rpc, field, why) = exceptions::FIELD_EXCEPTIONS[0];
        let note = format!("{rpc} {field}: {why}");
        if !self.report.exceptions.contains(&note) {
            self.report.exceptions.push(note);
        }
    }

    /// Learns the ids, image ids and IPs an answer introduces.
    fn learn(
        &mut self,
        call: &Call,
        req: &Value,
        reference: &Value,
        ours: &Value,
    ) -> std::result::Result<(), String> {
        let s = |v: &Value, k: &str| v[k].as_str().unwrap_or("").to_string();
        match call.rpc() {
            "RunPodSandbox" => {
                let id = s(ours, "podSandboxId");
                self.mapper
                    .learn("pod sandbox id", &s(reference, "podSandboxId"), &id)?;
                let cfg = &req["config"];
                let ports = cfg["port_mappings"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p["container_port"].as_u64())
                    .filter_map(|p| u16::try_from(p).ok())
                    .collect();
                self.pods.insert(
                    id,
                    PodInfo {
                        hostname: s(cfg, "hostname"),
                        ports,
                        ..Default::default()
                    },
                );
            }
            "CreateContainer" => {
                let id = s(ours, "containerId");
                self.mapper
                    .learn("container id", &s(reference, "containerId"), &id)?;
                let cfg = &req["config"];
                let words = |k: &str| -> Vec<String> {
                    cfg[k]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                };
                let mut command = words("command");
                command.extend(words("args"));
                let pod = s(req, "pod_sandbox_id");
                if let Some(ports) = cfg["annotations"]["io.kubernetes.container.ports"].as_str() {
                    let ports: Vec<Value> = serde_json::from_str(ports).unwrap_or_default();
                    if let Some(p) = self.pods.get_mut(&pod) {
                        for port in ports.iter().filter_map(|p| p["containerPort"].as_u64()) {
                            if let Ok(port) = u16::try_from(port) {
                                if !p.ports.contains(&port) {
                                    p.ports.push(port);
                                }
                            }
                        }
                    }
                }
                self.containers.insert(
                    id,
                    CtrInfo {
                        pod,
                        command: command.join(" "),
                        image: cfg["image"]["user_specified_image"]
                            .as_str()
                            .unwrap_or("")
                            .to_string(),
                    },
                );
            }
            "PullImage" => {
                self.mapper
                    .learn("image id", &s(reference, "imageRef"), &s(ours, "imageRef"))?
            }
            "PodSandboxStatus" => {
                let (rn, on) = (&reference["status"]["network"], &ours["status"]["network"]);
                if let (Some(r), Some(o)) = (rn["ip"].as_str(), on["ip"].as_str()) {
                    // A host-network pod has the node's address in both runs.
                    if self.mapper.ours(r).is_none() && r != o {
                        self.mapper.learn("pod ip", r, o)?;
                    }
                    if let Some(p) = self.pods.get_mut(&s(&ours["status"], "id")) {
                        p.ip = Some(o.to_string());
                    }
                }
            }
            "RemovePodSandbox" => {
                if let Some(p) = self.pods.get_mut(&s(req, "pod_sandbox_id")) {
                    p.removed = true;
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn use_stream(
        &mut self,
        call: &Call,
        req: &Value,
        ours: &Value,
    ) -> std::result::Result<(), String> {
        let url = ours["url"].as_str().unwrap_or("");
        match call.rpc() {
            "Exec" => {
                let ctr = self
                    .containers
                    .get(req["container_id"].as_str().unwrap_or(""))
                    .cloned()
                    .unwrap_or_default();
                let hostname = self
                    .pods
                    .get(&ctr.pod)
                    .map(|p| p.hostname.clone())
                    .unwrap_or_default();
                streams::exec(url, req, &hostname).await
            }
            "Attach" => {
                let ctr = self
                    .containers
                    .get(req["container_id"].as_str().unwrap_or(""))
                    .cloned()
                    .unwrap_or_default();
                streams::attach(url, req, &ctr.command).await
            }
            "PortForward" => {
                let pod = req["pod_sandbox_id"].as_str().unwrap_or("");
                let info = self.pods.get(pod).cloned().unwrap_or_default();
                let port = info.ports.first().copied().unwrap_or(80);
                let nginx = self
                    .containers
                    .values()
                    .any(|c| c.pod == pod && c.image.contains("/nginx:"));
                streams::port_forward(url, port, nginx.then_some("Welcome to nginx!")).await
            }
            _ => Ok(()),
        }
    }

    /// What is left of the pods the trace removed: mounts, cgroups,
    /// processes, state files, namespace pins, IP reservations.
    fn leaks(&self, env: &TestEnv, bridge: &TestBridge) -> Vec<String> {
        let _ = env;
        let mut out = Vec::new();
        let removed: Vec<(&String, &PodInfo)> =
            self.pods.iter().filter(|(_, p)| p.removed).collect();
        let mut ids: Vec<String> = removed.iter().map(|(id, _)| id.to_string()).collect();
        ids.extend(
            self.containers
                .iter()
                .filter(|(_, c)| removed.iter().any(|(p, _)| **p == c.pod))
                .map(|(id, _)| id.clone()),
        );
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for line in mountinfo.lines() {
            if let Some(id) = ids.iter().find(|id| line.contains(id.as_str())) {
                out.push(format!("mount of {id}: {line}"));
            }
        }
        for dir in cgroup_dirs(&self.cgroup_root) {
            if let Some(id) = ids
                .iter()
                .find(|id| dir.file_name().is_some_and(|n| n == id.as_str()))
            {
                out.push(format!("cgroup of {id}: {}", dir.display()));
            }
        }
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let cg = std::fs::read_to_string(e.path().join("cgroup")).unwrap_or_default();
            if let Some(id) = ids.iter().find(|id| cg.contains(id.as_str())) {
                let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
                out.push(format!(
                    "process {} ({}) of {id}",
                    e.file_name().to_string_lossy(),
                    comm.trim()
                ));
            }
        }
        for base in [&self.state_dir, &self.root_dir] {
            for p in walk(base) {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if let Some(id) = ids.iter().find(|id| name.contains(id.as_str())) {
                    out.push(format!("state of {id}: {}", p.display()));
                }
            }
        }
        let reserved = bridge.allocations();
        for (id, p) in &removed {
            if let Some(ip) = &p.ip {
                if reserved.contains(ip) {
                    out.push(format!("IP {ip} of pod {id} still reserved"));
                }
            }
        }
        out
    }

    /// Removes what the trace left (pods it stopped but did not remove) and
    /// the replay's own cgroup tree and mounts.
    async fn teardown(&mut self) {
        for (id, p) in self.pods.clone() {
            if p.removed {
                continue;
            }
            crate::calls::teardown_pod(&mut self.cri, &id).await;
        }
        let mut dirs = cgroup_dirs(&self.cgroup_root);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in dirs {
            let _ = std::fs::remove_dir(&d);
        }
        for m in &self.shared_mounts {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(m)
                .status();
        }
    }
}

/// Every directory of the replay's cgroup tree in every hierarchy.
fn cgroup_dirs(root: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for c in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let top = c.path().join(root);
        if top.is_dir() {
            out.push(top.clone());
            out.extend(walk(&top).into_iter().filter(|p| p.is_dir()));
        }
    }
    out
}

/// Every path below `dir` (not following symlinks).
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

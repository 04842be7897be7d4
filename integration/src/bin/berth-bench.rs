//! berth-bench: drives the same CRI workload against berthd and containerd and
//! prints p50/p95/max per operation and the Berth/containerd ratio of the p50s.
//!
//! By default it starts everything itself: a local docker-registry with the test
//! images, berthd (see `berth_integration::berthd` for how the binary is found)
//! and containerd + runc, each with private state in a tempdir, and tears them
//! down at the end. Build with `--release` for numbers worth quoting.

use std::path::PathBuf;

use anyhow::Context;
use berth_integration::bench::{self, Outcome};
use berth_integration::bench_stream;
use berth_integration::berthd::{self, BerthdOptions};
use berth_integration::client::{self, Cri};
use berth_integration::containerd::Containerd;
use berth_integration::crash::{self, CrashOptions};
use berth_integration::env::{Cni, TestEnv, TestEnvOptions};
use berth_integration::procmem::RuntimeProcs;
use clap::Parser;

/// First host id of the user-namespaced pods of `--userns` (pod i gets
/// `USERNS_BASE + (i % 64) * 65536`): far above the host's own users.
const USERNS_BASE: u32 = 65536 * 600;

#[derive(Parser)]
#[command(
    name = "berth-bench",
    about = "CRI benchmarks: berthd side by side with containerd"
)]
struct Args {
    /// Use this running berthd (unix:///path) instead of starting one. It must be
    /// able to pull from the bench's registry (see --certs-d).
    #[arg(long)]
    berth_endpoint: Option<String>,
    /// Use this running containerd CRI endpoint instead of starting one.
    #[arg(long)]
    containerd_endpoint: Option<String>,
    /// Do not measure containerd.
    #[arg(long)]
    no_containerd: bool,
    /// Also write the registry's hosts.toml into this dir (for external endpoints).
    #[arg(long)]
    certs_d: Option<PathBuf>,
    /// Iterations of the small-image pull and of the pod lifecycle.
    #[arg(long, default_value_t = 10)]
    iterations: usize,
    /// Iterations of the ~100 MB image pull.
    #[arg(long, default_value_t = 3)]
    large_iterations: usize,
    /// Give benchmark pods their own network namespace through CNI: both
    /// runtimes use one private bridge + host-local + portmap conflist (a test
    /// bridge of `berth_integration::bridge`, with its iptables guard), deleted
    /// at the end.
    #[arg(long)]
    pod_network: bool,
    /// With pod-lifecycle and --pod-network: also run the lifecycle with each
    /// pod in its own user namespace (userns_options POD, the kubelet's
    /// `hostUsers: false`), reported as its own rows next to the plain ones.
    #[arg(long)]
    userns: bool,
    /// Containers (created, not started) present during the list workload.
    #[arg(long, default_value_t = 500)]
    list_containers: usize,
    /// Pods those containers are spread over.
    #[arg(long, default_value_t = 50)]
    list_pods: usize,
    /// Pods started in the concurrent-pods and memory workloads.
    #[arg(long, default_value_t = 50)]
    pods: usize,
    /// MiB of stdout each exec-stream throughput run streams.
    #[arg(long, default_value_t = 100)]
    stream_mib: u64,
    /// Workloads to run (comma separated): pull-small, pull-large, pod-lifecycle,
    /// list, exec-sync, exec-stream (Exec + the streaming session over SPDY and
    /// WebSocket: round trip of `true`, and stdout throughput), concurrent-pods,
    /// memory, runtime (berth-monitor vs runc and crun on one OCI bundle, no
    /// daemon: its rows put runc/crun in the incumbent's column, measured even
    /// with --no-containerd), crash (berthd only, on its own CNI bridge:
    /// --crash-kills SIGKILLs at random points of pod lifecycles, then the counts
    /// of what was lost, stale or leaked; not in the default set).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "pull-small,pull-large,pod-lifecycle,list,memory,exec-sync,exec-stream,concurrent-pods,runtime"
    )]
    workloads: Vec<String>,
    /// Kills of the crash workload.
    #[arg(long, default_value_t = 1000)]
    crash_kills: usize,
    /// Seed of the crash workload (default: the time).
    #[arg(long)]
    crash_seed: Option<u64>,
    /// TOML appended to the config of the berthd the bench starts, e.g.
    /// `$'[metrics]\naddress = "127.0.0.1:0"'` (bash) to measure with metrics served.
    #[arg(long, default_value = "")]
    berth_config: String,
}

/// One row of the report: a workload's operation on both runtimes.
struct Row {
    workload: String,
    op: &'static str,
    berth: Outcome,
    /// Who is in the second column: containerd, or runc/crun for the
    /// runtime-level rows.
    incumbent: &'static str,
    containerd: Option<Outcome>,
}

/// Workloads that run against a CRI endpoint (the rest run without one).
const CRI_WORKLOADS: [&str; 8] = [
    "pull-small",
    "pull-large",
    "pod-lifecycle",
    "list",
    "exec-sync",
    "exec-stream",
    "concurrent-pods",
    "memory",
];

async fn pull(cri: &mut Cri, image: &str) {
    // A failure here shows up as errors in the workload that needs the image.
    let _ = cri
        .image
        .pull_image(berth_proto::v1::PullImageRequest {
            image: Some(berth_proto::v1::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
}

/// Runs the CRI workloads against one runtime. `procs` finds the runtime's
/// processes (None for an endpoint we did not start: no memory figures).
async fn run_workloads(
    cri: &mut Cri,
    args: &Args,
    small: &str,
    large: &str,
    log_dir: &std::path::Path,
    procs: Option<&RuntimeProcs>,
) -> Vec<(String, &'static str, Outcome)> {
    let mut out: Vec<(String, &'static str, Outcome)> = Vec::new();
    let wants = |w: &str| args.workloads.iter().any(|x| x == w);
    if wants("pull-small") {
        let o = bench::pull_cold(cri, small, args.iterations).await;
        out.push(("pull-small (cold)".into(), "PullImage", o));
    }
    if wants("pull-large") {
        let o = bench::pull_cold(cri, large, args.large_iterations).await;
        out.push(("pull-large (cold, ~100 MB)".into(), "PullImage", o));
    }
    // Memory before the pod workloads: its "idle" figure is the daemon with
    // the image pulled and nothing else done yet.
    if wants("memory") {
        pull(cri, small).await;
        let workload = format!("memory ({} pods)", args.pods);
        let outcomes = match procs {
            Some(p) => bench::memory(cri, small, log_dir, args.pods, p).await,
            None => bench::MEMORY_OPS
                .iter()
                .map(|_| Outcome::Failed("external endpoint: its processes are unknown".into()))
                .collect(),
        };
        for (op, o) in bench::MEMORY_OPS.iter().zip(outcomes) {
            out.push((workload.clone(), op, o));
        }
    }
    if wants("pod-lifecycle") {
        pull(cri, small).await;
        let outcomes =
            bench::pod_lifecycle(cri, small, log_dir, args.iterations, args.pod_network).await;
        let workload = if args.pod_network {
            "pod-lifecycle (CNI bridge)"
        } else {
            "pod-lifecycle (host net)"
        };
        for (op, o) in bench::POD_OPS.iter().zip(outcomes) {
            out.push((workload.into(), op, o));
        }
        if args.userns && args.pod_network {
            let outcomes = bench::pod_lifecycle_with(
                cri,
                small,
                log_dir,
                args.iterations,
                true,
                Some(USERNS_BASE),
            )
            .await;
            for (op, o) in bench::POD_OPS.iter().zip(outcomes) {
                out.push(("pod-lifecycle (CNI bridge, userns)".into(), op, o));
            }
        }
    }
    if wants("list") {
        pull(cri, small).await;
        let outcomes = bench::list_latency(
            cri,
            small,
            log_dir,
            args.list_pods,
            args.list_containers,
            args.iterations,
        )
        .await;
        let workload = format!("list ({} containers)", args.list_containers);
        for (op, o) in bench::LIST_OPS.iter().zip(outcomes) {
            out.push((workload.clone(), op, o));
        }
    }
    if wants("exec-sync") {
        pull(cri, small).await;
        let o = bench::exec_sync(cri, small, log_dir, args.iterations).await;
        out.push(("exec-sync (`true`)".into(), "ExecSync", o));
    }
    if wants("exec-stream") {
        pull(cri, small).await;
        let options = bench_stream::ExecStreamOptions {
            round_trips: args.iterations,
            throughput_bytes: args.stream_mib * 1024 * 1024,
            ..Default::default()
        };
        out.extend(bench_stream::exec_streaming(cri, small, log_dir, &options).await);
    }
    if wants("concurrent-pods") {
        pull(cri, small).await;
        let outcomes = bench::concurrent_pods(cri, small, log_dir, args.pods, procs).await;
        let workload = format!("concurrent-pods ({})", args.pods);
        for (op, o) in bench::CONCURRENT_OPS.iter().zip(outcomes) {
            out.push((workload.clone(), op, o));
        }
    }
    out
}

/// The runtime-level comparison: berth-monitor in the berth column, runc and
/// crun each in a row of their own in the incumbent's column.
async fn runtime_rows(iterations: usize) -> Vec<Row> {
    let monitor = match berthd::berthd_binary() {
        Ok(b) => b.with_file_name("berth-monitor"),
        Err(_) => berth_runtime::bench::default_monitor(),
    };
    let workload = "runtime (create..delete `true`)".to_string();
    let results =
        tokio::task::spawn_blocking(move || berth_runtime::bench::compare(iterations, &monitor))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
    let results = match results {
        Ok(r) => r,
        Err(e) => {
            return vec![Row {
                workload,
                op: "berth-monitor",
                berth: Outcome::Failed(e),
                incumbent: "runc",
                containerd: None,
            }]
        }
    };
    let to_outcome = |r: &berth_runtime::bench::RuntimeResult| match &r.samples {
        Ok(v) => Outcome::Samples(v.clone()),
        Err(e) => Outcome::Failed(e.clone()),
    };
    let berth = to_outcome(&results[0]);
    results[1..]
        .iter()
        .map(|r| Row {
            workload: workload.clone(),
            op: if r.runtime == "runc" {
                "vs runc"
            } else {
                "vs crun"
            },
            incumbent: if r.runtime == "runc" { "runc" } else { "crun" },
            berth: berth.clone(),
            containerd: Some(to_outcome(r)),
        })
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.userns && !args.pod_network {
        anyhow::bail!("--userns needs --pod-network: a pod with its own user namespace cannot share the host's network");
    }
    for w in &args.workloads {
        if !CRI_WORKLOADS.contains(&w.as_str()) && w != "runtime" && w != "crash" {
            anyhow::bail!(
                "unknown workload {w:?}; known: {}, runtime, crash",
                CRI_WORKLOADS.join(", ")
            );
        }
    }
    if let Some(reason) = berth_integration::skip::first(&[
        berth_integration::skip::no_registry(),
        berth_integration::skip::no_busybox(),
    ]) {
        anyhow::bail!("cannot benchmark: {reason}");
    }
    let mut rows = Vec::new();
    let mut containerd_note = None;
    if args
        .workloads
        .iter()
        .any(|w| CRI_WORKLOADS.contains(&w.as_str()))
    {
        containerd_note = cri_benchmarks(&args, &mut rows).await?;
    }
    if args.workloads.iter().any(|w| w == "runtime") {
        eprintln!("running the runtime-level comparison…");
        rows.extend(runtime_rows(args.iterations).await);
    }
    print_report(&rows, containerd_note.as_deref());
    if args.workloads.iter().any(|w| w == "crash") {
        crash_workload(&args).await?;
    }
    Ok(())
}

/// The crash workload: berthd on a private CNI bridge, `--crash-kills` SIGKILLs
/// at random points of pod lifecycles (see `berth_integration::crash`), and the
/// counts. containerd is not run: this measures Berth's own guarantees.
async fn crash_workload(args: &Args) -> anyhow::Result<()> {
    if let Some(reason) = berth_integration::skip::no_bridge_pod_env() {
        anyhow::bail!("cannot run the crash workload: {reason}");
    }
    eprintln!("crash: starting berthd on a private CNI bridge…");
    let mut env = TestEnv::start_for_pods_on_bridge(vec![]).await?;
    let pulled = env.pull("layered").await?;
    let seed = args.crash_seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    });
    let options = CrashOptions {
        kills: args.crash_kills,
        seed,
        max_delay: std::time::Duration::from_millis(60),
        busybox: env.image("busybox"),
        pulled,
        log_dir: env.logs.path().to_path_buf(),
    };
    eprintln!("crash: {} kills, seed {seed}…", options.kills);
    let started = std::time::Instant::now();
    let r = crash::run(&mut env.berthd, env.bridge.as_ref(), &options).await?;
    println!();
    println!(
        "crash consistency: {} kills (seed {seed}) in {:.0} s: {} inside a call, {} retries, {} half-made objects adopted or removed",
        r.kills,
        started.elapsed().as_secs_f64(),
        r.mid_call,
        r.retries,
        r.adopted
    );
    let by_step: Vec<String> = r
        .kills_by_step
        .iter()
        .map(|(step, n)| format!("{step} {n}"))
        .collect();
    println!("  kills aimed at: {}", by_step.join(", "));
    println!(
        "  lost {}, stale {}, leaked {}; berthd restart to first answer: {:.1} ms mean",
        r.lost.len(),
        r.stale.len(),
        r.leaked.len(),
        r.restart_time.as_secs_f64() * 1000.0 / r.kills.max(1) as f64
    );
    for line in r.lost.iter().chain(&r.stale).chain(&r.leaked) {
        println!("  {line}");
    }
    Ok(())
}

/// Runs the CRI workloads against berthd then containerd, appending rows;
/// returns why containerd was not measured, if it was not.
async fn cri_benchmarks(args: &Args, rows: &mut Vec<Row>) -> anyhow::Result<Option<String>> {
    eprintln!("building test images, starting the registry and berthd…");
    let cni = if args.pod_network {
        // One private bridge (with its iptables guard) for both runtimes' pods.
        Cni::Bridge(vec![serde_json::json!({
            "type": "portmap",
            "capabilities": { "portMappings": true }
        })])
    } else {
        Cni::AsConfigured
    };
    let mut env = TestEnv::start_with(TestEnvOptions {
        berthd: BerthdOptions::default()
            .log_level("info")
            .config(&args.berth_config),
        with_large: true,
        cni,
        ..Default::default()
    })
    .await
    .context("start the registry and berthd")?;
    if let Some(extra) = &args.certs_d {
        env.registry.write_hosts_toml(extra)?;
    }
    let small = env.image("busybox");
    let large = env.image("large");
    let work = tempfile::Builder::new().prefix("berth-bench-").tempdir()?;

    let (berth_endpoint, berth_procs) = match &args.berth_endpoint {
        Some(e) => {
            // Not the one measured: it would only take CPU from it.
            env.berthd.stop().await?;
            (e.clone(), None)
        }
        None => {
            let b = &env.berthd;
            let procs = b
                .pid()
                .map(|pid| RuntimeProcs::berthd(pid, b.dir(), &bench::SLEEPER));
            (b.endpoint(), procs)
        }
    };
    let mut berth = client::connect(client::socket_path(&berth_endpoint)).await?;
    let berth_log = work.path().join("berth-logs");
    eprintln!("running workloads against berthd ({berth_endpoint})…");
    let berth_rows = run_workloads(
        &mut berth,
        args,
        &small,
        &large,
        &berth_log,
        berth_procs.as_ref(),
    )
    .await;
    // berthd first, then containerd, never both at once: they share 2 cores here.
    env.berthd.cleanup();

    let mut containerd_rows = None;
    let mut containerd_note = None;
    if args.no_containerd {
        containerd_note = Some("--no-containerd".to_string());
    } else {
        let started = match &args.containerd_endpoint {
            Some(e) => Ok(e.clone()),
            None => match Containerd::unavailable_reason() {
                Some(r) => Err(r),
                None => {
                    eprintln!("starting containerd…");
                    env.start_containerd()
                        .await
                        .map(|c| c.endpoint())
                        .map_err(|e| e.to_string())
                }
            },
        };
        match started {
            Ok(endpoint) => {
                let mut c = client::connect(client::socket_path(&endpoint)).await?;
                eprintln!("running workloads against containerd ({endpoint})…");
                let log_dir = work.path().join("containerd-logs");
                let procs = env.containerd.as_ref().and_then(|h| {
                    Some(RuntimeProcs::containerd(h.pid()?, h.dir(), &bench::SLEEPER))
                });
                containerd_rows = Some(
                    run_workloads(&mut c, args, &small, &large, &log_dir, procs.as_ref()).await,
                );
                env.containerd = None;
            }
            Err(reason) => containerd_note = Some(reason),
        }
    }

    rows.extend(
        berth_rows
            .into_iter()
            .enumerate()
            .map(|(i, (workload, op, berth))| Row {
                workload,
                op,
                berth,
                incumbent: "containerd",
                containerd: containerd_rows.as_ref().map(|r| r[i].2.clone()),
            }),
    );
    Ok(containerd_note)
}

/// Cells longer than this are cut in the table (error messages).
const CELL: usize = 44;

fn cell(text: String) -> String {
    if text.chars().count() <= CELL {
        text
    } else {
        let cut: String = text.chars().take(CELL - 1).collect();
        format!("{cut}…")
    }
}

/// One table: berth's column, the incumbent's (containerd; runc or crun for
/// the runtime rows) and the ratio (p50s for latencies, values otherwise).
fn print_report(rows: &[Row], containerd_note: Option<&str>) {
    println!(
        "{:<32} {:<26} {:<CELL$} {:<CELL$} berth/other",
        "workload",
        "operation",
        "berth p50/p95/max ms | value",
        "containerd (runtime rows: runc/crun)",
    );
    for r in rows {
        let c = match &r.containerd {
            Some(o) => o.summary(r.incumbent),
            None => "not measured".into(),
        };
        let ratio = r
            .containerd
            .as_ref()
            .and_then(|c| bench::p50_ratio(&r.berth, c))
            .map_or_else(|| "-".to_string(), |x| format!("{x:.2}"));
        println!(
            "{:<32} {:<26} {:<CELL$} {:<CELL$} {}",
            r.workload,
            r.op,
            cell(r.berth.summary("berthd")),
            cell(c),
            ratio
        );
    }
    if let Some(note) = containerd_note {
        println!("containerd not measured ({note}): berth alone");
    }
    // Full error texts the table had to cut.
    for r in rows {
        for (who, o) in [
            ("berthd", Some(&r.berth)),
            (r.incumbent, r.containerd.as_ref()),
        ] {
            if let Some(Outcome::Failed(m)) = o {
                if m.chars().count() > CELL {
                    println!("note: {} / {} / {who}: {m}", r.workload, r.op);
                }
            }
        }
    }
}

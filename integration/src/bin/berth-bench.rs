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
use berth_integration::berthd::{Berthd, BerthdOptions};
use berth_integration::client::{self, Cri};
use berth_integration::containerd::{Containerd, ContainerdOptions};
use berth_integration::registry::Registry;
use berth_integration::test_images;
use clap::Parser;

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
    /// Give benchmark pods their own network namespace through CNI: the bench
    /// writes a bridge + host-local conflist (bridge `berthbench0`, 10.88.77.0/24)
    /// into a private dir used by both runtimes and deletes the bridge at the end.
    #[arg(long)]
    pod_network: bool,
    /// Containers (created, not started) present during the list workload.
    #[arg(long, default_value_t = 500)]
    list_containers: usize,
    /// Pods those containers are spread over.
    #[arg(long, default_value_t = 50)]
    list_pods: usize,
    /// Workloads to run (comma separated): pull-small, pull-large, pod-lifecycle, list.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "pull-small,pull-large,pod-lifecycle,list"
    )]
    workloads: Vec<String>,
}

/// One row of the report: a workload's operation on both runtimes.
struct Row {
    workload: &'static str,
    op: &'static str,
    berth: Outcome,
    containerd: Option<Outcome>,
}

async fn run_workloads(
    cri: &mut Cri,
    args: &Args,
    small: &str,
    large: &str,
    log_dir: &std::path::Path,
) -> Vec<(&'static str, &'static str, Outcome)> {
    let mut out = Vec::new();
    let wants = |w: &str| args.workloads.iter().any(|x| x == w);
    if wants("pull-small") {
        let o = bench::pull_cold(cri, small, args.iterations).await;
        out.push(("pull-small (cold)", "PullImage", o));
    }
    if wants("pull-large") {
        let o = bench::pull_cold(cri, large, args.large_iterations).await;
        out.push(("pull-large (cold, ~100 MB)", "PullImage", o));
    }
    if wants("pod-lifecycle") {
        // The container needs its image; a failure here shows up as errors below.
        let _ = cri
            .image
            .pull_image(berth_proto::v1::PullImageRequest {
                image: Some(berth_proto::v1::ImageSpec {
                    image: small.into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await;
        let outcomes =
            bench::pod_lifecycle(cri, small, log_dir, args.iterations, args.pod_network).await;
        let workload = if args.pod_network {
            "pod-lifecycle (CNI bridge)"
        } else {
            "pod-lifecycle (host net)"
        };
        for (op, o) in bench::POD_OPS.iter().zip(outcomes) {
            out.push((workload, op, o));
        }
    }
    if wants("list") {
        let _ = cri
            .image
            .pull_image(berth_proto::v1::PullImageRequest {
                image: Some(berth_proto::v1::ImageSpec {
                    image: small.into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await;
        let outcomes = bench::list_latency(
            cri,
            small,
            log_dir,
            args.list_pods,
            args.list_containers,
            args.iterations,
        )
        .await;
        let workload = match args.list_containers {
            500 => "list (500 containers)",
            _ => "list (N containers)",
        };
        for (op, o) in bench::LIST_OPS.iter().zip(outcomes) {
            out.push((workload, op, o));
        }
    }
    out
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(reason) = berth_integration::skip::first(&[
        berth_integration::skip::no_registry(),
        berth_integration::skip::no_busybox(),
    ]) {
        anyhow::bail!("cannot benchmark: {reason}");
    }

    eprintln!("building test images and starting the registry…");
    let registry = Registry::start().await?;
    let reg = registry.client()?;
    reg.push_image("busybox", "latest", test_images::busybox()?)
        .await?;
    reg.push_image("large", "latest", test_images::large()?)
        .await?;
    reg.push_image("pause", "latest", test_images::pause()?)
        .await?;
    let small = registry.image_ref("busybox", "latest");
    let large = registry.image_ref("large", "latest");
    let pause = registry.image_ref("pause", "latest");

    let work = tempfile::Builder::new().prefix("berth-bench-").tempdir()?;
    let certs_d = work.path().join("certs.d");
    registry.write_hosts_toml(&certs_d)?;
    if let Some(extra) = &args.certs_d {
        registry.write_hosts_toml(extra)?;
    }

    let cni_conf_dir = if args.pod_network {
        // The bridge plugin turns on ip_forward: keep pod traffic on this machine.
        let _ = std::process::Command::new("iptables")
            .args([
                "-I", "FORWARD", "-i", BRIDGE, "!", "-o", BRIDGE, "-j", "DROP",
            ])
            .status();
        let dir = work.path().join("cni/net.d");
        write_bridge_conflist(&dir, &work.path().join("cni/ipam"))?;
        Some(dir)
    } else {
        None
    };

    // berthd first, then containerd, never both at once: they share 2 cores here.
    let (_berthd, berth_endpoint) = match &args.berth_endpoint {
        Some(e) => (None, e.clone()),
        None => {
            eprintln!("starting berthd…");
            let config = format!("[registry]\nconfig_path = \"{}\"\n", certs_d.display());
            let mut options = BerthdOptions::default().log_level("info").config(&config);
            options.cni_conf_dir = cni_conf_dir.clone();
            let b = Berthd::start_with(options).await.context("start berthd")?;
            let e = b.endpoint();
            (Some(b), e)
        }
    };
    let mut berth = client::connect(client::socket_path(&berth_endpoint)).await?;
    let berth_log = work.path().join("berth-logs");
    eprintln!("running workloads against berthd ({berth_endpoint})…");
    let berth_rows = run_workloads(&mut berth, &args, &small, &large, &berth_log).await;
    drop(_berthd);

    let mut containerd_rows = None;
    let mut containerd_note = None;
    if !args.no_containerd {
        let started = match &args.containerd_endpoint {
            Some(e) => Ok((None, e.clone())),
            None => match Containerd::unavailable_reason() {
                Some(r) => Err(r),
                None => {
                    eprintln!("starting containerd…");
                    let options = ContainerdOptions {
                        sandbox_image: pause.clone(),
                        registry_config_path: Some(certs_d.clone()),
                        cni_conf_dir: cni_conf_dir.clone(),
                        ..Default::default()
                    };
                    match Containerd::start(options).await {
                        Ok(c) => {
                            let e = c.endpoint();
                            Ok((Some(c), e))
                        }
                        Err(e) => Err(e.to_string()),
                    }
                }
            },
        };
        match started {
            Ok((handle, endpoint)) => {
                let mut c = client::connect(client::socket_path(&endpoint)).await?;
                eprintln!("running workloads against containerd ({endpoint})…");
                let log_dir = work.path().join("containerd-logs");
                containerd_rows =
                    Some(run_workloads(&mut c, &args, &small, &large, &log_dir).await);
                drop(handle);
            }
            Err(reason) => containerd_note = Some(reason),
        }
    }

    let rows: Vec<Row> = berth_rows
        .into_iter()
        .enumerate()
        .map(|(i, (workload, op, berth))| Row {
            workload,
            op,
            berth,
            containerd: containerd_rows.as_ref().map(|r| r[i].2.clone()),
        })
        .collect();
    print_report(&rows, containerd_note.as_deref());
    if args.pod_network {
        // The bridge plugin leaves its bridge behind once the last pod is gone.
        let _ = std::process::Command::new("ip")
            .args(["link", "del", BRIDGE])
            .status();
        let _ = std::process::Command::new("iptables")
            .args([
                "-D", "FORWARD", "-i", BRIDGE, "!", "-o", BRIDGE, "-j", "DROP",
            ])
            .status();
    }
    Ok(())
}

const BRIDGE: &str = "berthbench0";

/// A bridge + host-local + portmap conflist (CNI 0.4.0, understood by
/// containerd 1.6's libcni and by berthd), with IPAM state in `ipam_dir`.
fn write_bridge_conflist(dir: &std::path::Path, ipam_dir: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::create_dir_all(ipam_dir)?;
    let conf = serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "berth-bench",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": true,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "dataDir": ipam_dir,
                    "ranges": [[{ "subnet": "10.88.77.0/24" }]],
                    "routes": [{ "dst": "0.0.0.0/0" }]
                }
            },
            { "type": "portmap", "capabilities": { "portMappings": true } }
        ]
    });
    std::fs::write(
        dir.join("10-berth-bench.conflist"),
        serde_json::to_vec_pretty(&conf)?,
    )?;
    Ok(())
}

fn print_report(rows: &[Row], containerd_note: Option<&str>) {
    println!(
        "{:<28} {:<18} {:<40} {:<40} berth/containerd p50",
        "workload", "operation", "berth p50/p95/max ms", "containerd p50/p95/max ms",
    );
    for r in rows {
        let c = match &r.containerd {
            Some(o) => o.summary("containerd"),
            None => "not measured".into(),
        };
        let ratio = r
            .containerd
            .as_ref()
            .and_then(|c| bench::p50_ratio(&r.berth, c))
            .map_or_else(|| "-".to_string(), |x| format!("{x:.2}"));
        println!(
            "{:<28} {:<18} {:<40} {:<40} {}",
            r.workload,
            r.op,
            r.berth.summary("berthd"),
            c,
            ratio
        );
    }
    if let Some(note) = containerd_note {
        println!("containerd not measured: {note}");
    }
}

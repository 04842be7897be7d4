//! Pod stats, pod metrics and pod resources end to end: the real berthd, real
//! CNI bridge pods, real cgroups, driven over gRPC as kubelet does.
//!
//! Traffic goes only to the pods these tests create (their bridge has an
//! iptables guard, see `berth_integration::bridge`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_integration::berthd::{Berthd, BerthdOptions};
use berth_integration::bridge::{self, TestBridge};
use berth_integration::calls::{self, pod_ip};
use berth_integration::client::Cri;
use berth_integration::cni::TestPlugins;
use berth_integration::env::{container_config, TestEnv};
use berth_integration::{skip, skip_if, wait};
use berth_proto::v1::*;

/// A test env whose pods get addresses on a private bridge.
async fn bridge_env() -> TestEnv {
    TestEnv::start_for_pods_on_bridge(vec![]).await.unwrap()
}

async fn pod_stats(cri: &mut Cri, pod: &str) -> PodSandboxStats {
    cri.runtime
        .pod_sandbox_stats(PodSandboxStatsRequest {
            pod_sandbox_id: pod.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap()
}

async fn pod_metrics(cri: &mut Cri) -> Vec<PodSandboxMetrics> {
    cri.runtime
        .list_pod_sandbox_metrics(ListPodSandboxMetricsRequest {})
        .await
        .unwrap()
        .into_inner()
        .pod_metrics
}

async fn update_pod_resources(
    cri: &mut Cri,
    pod: &str,
    overhead: Option<LinuxContainerResources>,
    resources: Option<LinuxContainerResources>,
) -> Result<(), tonic::Status> {
    cri.runtime
        .update_pod_sandbox_resources(UpdatePodSandboxResourcesRequest {
            pod_sandbox_id: pod.into(),
            overhead,
            resources,
        })
        .await
        .map(|_| ())
}

fn network(s: &PodSandboxStats) -> Option<NetworkUsage> {
    s.linux.as_ref().unwrap().network.clone()
}

fn counter(v: &Option<UInt64Value>) -> u64 {
    v.as_ref().expect("counter present").value
}

/// GETs `path` from `addr`, retrying while the server starts; returns the
/// whole response's size.
fn http_get(addr: &str, path: &str) -> usize {
    bridge::http_get(addr, path).len()
}

fn host_network(mut pc: PodSandboxConfig) -> PodSandboxConfig {
    let linux = pc.linux.get_or_insert_with(Default::default);
    linux.security_context = Some(LinuxSandboxSecurityContext {
        namespace_options: Some(calls::namespaces(
            NamespaceMode::Node,
            NamespaceMode::Container,
        )),
        ..Default::default()
    });
    pc
}

#[tokio::test]
async fn pod_stats_and_metrics_count_the_traffic_a_bridge_pod_serves() {
    skip_if!(skip::no_bridge_pod_env());
    let mut env = bridge_env().await;
    let busybox = env.image("busybox");
    let pc = env.pod_config("served");
    let pod = env.run_pod(&pc).await.unwrap();
    let ip = pod_ip(&mut env.cri, &pod).await;
    let subnet_prefix = &env.bridge.as_ref().unwrap().subnet_prefix;
    assert!(ip.starts_with(subnet_prefix.as_str()), "{ip}");
    let web = env
        .run_container(
            &pod,
            &pc,
            container_config(
                "web",
                &busybox,
                &[
                    "sh",
                    "-c",
                    "mkdir -p /www && dd if=/dev/zero of=/www/big bs=1024 count=256 2>/dev/null && exec httpd -f -p 8080 -h /www",
                ],
            ),
        )
        .await
        .unwrap();
    let host_pc = host_network(env.pod_config("hostnet"));
    let host_pod = env.run_pod(&host_pc).await.unwrap();

    let addr = format!("{ip}:8080");
    http_get(&addr, "/big"); // the server is up
    let before =
        network(&pod_stats(&mut env.cri, &pod).await).expect("bridge pod has network stats");
    let eth0 = before.default_interface.clone().expect("default interface");
    assert_eq!(eth0.name, "eth0");
    assert!(before.timestamp > 0);
    assert!(
        before.interfaces.iter().any(|i| i.name == "eth0")
            && before.interfaces.iter().all(|i| i.name != "lo"),
        "{:?}",
        before.interfaces
    );
    let mut served = 0;
    for _ in 0..8 {
        served += http_get(&addr, "/big");
    }
    assert!(served >= 8 * 256 * 1024, "{served}");

    let after = network(&pod_stats(&mut env.cri, &pod).await).unwrap();
    let eth0_after = after.default_interface.clone().unwrap();
    let tx_grew = counter(&eth0_after.tx_bytes) - counter(&eth0.tx_bytes);
    let rx_grew = counter(&eth0_after.rx_bytes) - counter(&eth0.rx_bytes);
    assert!(
        tx_grew >= served as u64,
        "tx grew by {tx_grew}, served {served}"
    );
    // Requests and ACKs: eight connections' worth of packets at least.
    assert!(rx_grew >= 8 * 200, "rx grew by {rx_grew}");
    assert_eq!(counter(&eth0_after.rx_errors), 0);
    assert_eq!(counter(&eth0_after.tx_errors), 0);
    assert!(after.timestamp >= before.timestamp);

    // The list and stream variants carry the same counters; the host-network
    // pod has none of its own.
    let listed = env
        .cri
        .runtime
        .list_pod_sandbox_stats(ListPodSandboxStatsRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .stats;
    let by_id: HashMap<String, PodSandboxStats> = listed
        .into_iter()
        .map(|s| (s.attributes.as_ref().unwrap().id.clone(), s))
        .collect();
    let listed_eth0 = network(&by_id[&pod]).unwrap().default_interface.unwrap();
    assert!(counter(&listed_eth0.tx_bytes) >= counter(&eth0_after.tx_bytes));
    assert_eq!(network(&by_id[&host_pod]), None, "host-network pod");
    let mut stream = env
        .cri
        .runtime
        .stream_pod_sandbox_stats(StreamPodSandboxStatsRequest { filter: None })
        .await
        .unwrap()
        .into_inner();
    let mut streamed = Vec::new();
    while let Some(page) = stream.message().await.unwrap() {
        streamed.extend(page.pod_sandbox_stats);
    }
    let s = streamed
        .iter()
        .find(|s| s.attributes.as_ref().unwrap().id == pod)
        .expect("streamed pod stats");
    assert!(
        counter(&network(s).unwrap().default_interface.unwrap().tx_bytes)
            >= counter(&eth0_after.tx_bytes)
    );

    // Metrics: the descriptors kubelet asks for, then values for both pods.
    let descriptors = env
        .cri
        .runtime
        .list_metric_descriptors(ListMetricDescriptorsRequest {})
        .await
        .unwrap()
        .into_inner()
        .descriptors;
    let keys: HashMap<String, Vec<String>> = descriptors
        .iter()
        .map(|d| (d.name.clone(), d.label_keys.clone()))
        .collect();
    for name in [
        "container_cpu_usage_seconds_total",
        "container_memory_working_set_bytes",
        "container_memory_usage_bytes",
        "container_spec_memory_limit_bytes",
        "container_processes",
        "container_network_receive_bytes_total",
        "container_network_transmit_bytes_total",
    ] {
        let d = descriptors
            .iter()
            .find(|d| d.name == name)
            .unwrap_or_else(|| panic!("no descriptor {name}"));
        assert!(!d.help.is_empty() && !d.label_keys.is_empty(), "{d:?}");
    }
    assert!(keys["container_network_transmit_bytes_total"].contains(&"interface".to_string()));

    let metrics = pod_metrics(&mut env.cri).await;
    let pm = metrics
        .iter()
        .find(|m| m.pod_sandbox_id == pod)
        .expect("metrics of the bridge pod");
    let all = pm
        .metrics
        .iter()
        .chain(pm.container_metrics.iter().flat_map(|c| c.metrics.iter()));
    for m in all {
        let k = keys
            .get(&m.name)
            .unwrap_or_else(|| panic!("metric {} has no descriptor", m.name));
        assert_eq!(k.len(), m.label_values.len(), "{m:?}");
        assert!(m.timestamp > 0 && m.value.is_some(), "{m:?}");
    }
    let find = |ms: &[Metric], name: &str| -> Metric {
        ms.iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no {name} in {ms:?}"))
            .clone()
    };
    let tx = find(&pm.metrics, "container_network_transmit_bytes_total");
    assert_eq!(tx.metric_type, MetricType::Counter as i32);
    assert_eq!(tx.label_values.last().unwrap(), "eth0");
    assert!(tx.value.unwrap().value >= counter(&eth0_after.tx_bytes));
    assert!(
        find(&pm.metrics, "container_network_receive_bytes_total")
            .value
            .unwrap()
            .value
            >= counter(&eth0_after.rx_bytes)
    );
    let cm = pm
        .container_metrics
        .iter()
        .find(|c| c.container_id == web)
        .expect("metrics of the web container");
    let procs = find(&cm.metrics, "container_processes");
    assert_eq!(procs.metric_type, MetricType::Gauge as i32);
    assert!(procs.value.unwrap().value >= 1);
    assert!(
        find(&cm.metrics, "container_memory_usage_bytes")
            .value
            .unwrap()
            .value
            > 0
    );
    assert_eq!(
        find(&cm.metrics, "container_cpu_usage_seconds_total").metric_type,
        MetricType::Counter as i32
    );
    let labels = &find(&cm.metrics, "container_memory_working_set_bytes").label_values;
    assert!(
        labels.contains(&"web".to_string()) && labels.contains(&"served".to_string()),
        "{labels:?}"
    );
    // Pod-level usage is the sum of its containers: at least the web server's.
    assert!(
        find(&pm.metrics, "container_memory_usage_bytes")
            .value
            .unwrap()
            .value
            >= find(&cm.metrics, "container_memory_usage_bytes")
                .value
                .unwrap()
                .value
                / 2
    );
    let hm = metrics
        .iter()
        .find(|m| m.pod_sandbox_id == host_pod)
        .expect("metrics of the host-network pod");
    assert!(
        hm.metrics
            .iter()
            .all(|m| !m.name.starts_with("container_network_")),
        "{:?}",
        hm.metrics
    );

    let mut stream = env
        .cri
        .runtime
        .stream_pod_sandbox_metrics(StreamPodSandboxMetricsRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut streamed = Vec::new();
    while let Some(page) = stream.message().await.unwrap() {
        streamed.extend(page.pod_sandbox_metrics);
    }
    let mut ids: Vec<_> = streamed.iter().map(|m| m.pod_sandbox_id.clone()).collect();
    ids.sort();
    let mut want = vec![pod.clone(), host_pod.clone()];
    want.sort();
    assert_eq!(ids, want);

    env.remove_pod(&pod).await.unwrap();
    env.remove_pod(&host_pod).await.unwrap();
    // A removed pod has no metrics.
    let metrics = pod_metrics(&mut env.cri).await;
    assert!(metrics.is_empty(), "{metrics:?}");
    let net = env.bridge.as_ref().unwrap();
    assert_eq!(net.allocations(), Vec::<String>::new());
}

/// Every cgroup dir named `rel` under each v1 hierarchy (or the v2 tree).
fn cgroup_dirs(rel: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut out = vec![root.join(rel)];
    for h in std::fs::read_dir(root).into_iter().flatten().flatten() {
        out.push(h.path().join(rel));
    }
    out.retain(|p| p.is_dir());
    out
}

/// Removes the test's cgroup tree from every hierarchy when dropped, also
/// when the test fails half way.
struct CgroupTree(String);

impl Drop for CgroupTree {
    fn drop(&mut self) {
        for d in cgroup_dirs(&self.0) {
            remove_cgroup_tree(&d);
        }
    }
}

/// Removes a cgroup subtree bottom-up (cgroup dirs are removed with rmdir).
fn remove_cgroup_tree(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_cgroup_tree(&e.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

fn read_cgroup(controller: &str, rel: &str, file: &str) -> String {
    let p = Path::new("/sys/fs/cgroup")
        .join(controller)
        .join(rel)
        .join(file);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

async fn verbose_info(cri: &mut Cri, pod: &str) -> serde_json::Value {
    let info = cri
        .runtime
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: pod.into(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner()
        .info;
    serde_json::from_str(&info["info"]).unwrap()
}

#[tokio::test]
async fn update_pod_sandbox_resources_writes_the_pod_cgroup_and_survives_a_restart() {
    skip_if!(skip::no_pod_env());
    if !Path::new("/sys/fs/cgroup/cpu").is_dir() || !Path::new("/sys/fs/cgroup/memory").is_dir() {
        eprintln!("SKIPPED: needs the v1 cpu and memory controllers");
        return;
    }
    let top = format!("berth-e2e-podres-{}", std::process::id());
    let rel = format!("{top}/pod-resized");
    // Declared before the env: dropped after berthd has killed the containers.
    let _cgroups = CgroupTree(top.clone());
    let mut env = TestEnv::start_for_pods().await.unwrap();
    let busybox = env.image("busybox");
    let mut pc = env.pod_config("resized");
    pc.linux.get_or_insert_with(Default::default).cgroup_parent = format!("/{rel}");
    let pod = env.run_pod(&pc).await.unwrap();
    // The container's cgroup is created under the pod's: this makes the pod cgroup.
    env.run_container(
        &pod,
        &pc,
        container_config("sleeper", &busybox, &["sleep", "3600"]),
    )
    .await
    .unwrap();

    // A parent's cpuset cannot shrink below its children's (EBUSY): keep the node's.
    let node_cpus = std::fs::read_to_string("/sys/fs/cgroup/cpuset/cpuset.cpus")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let resources = LinuxContainerResources {
        cpu_period: 100_000,
        cpu_quota: 50_000,
        cpu_shares: 512,
        memory_limit_in_bytes: 256 << 20,
        cpuset_cpus: node_cpus.clone(),
        ..Default::default()
    };
    let overhead = LinuxContainerResources {
        cpu_shares: 100,
        cpu_quota: 10_000,
        memory_limit_in_bytes: 16 << 20,
        ..Default::default()
    };
    update_pod_resources(
        &mut env.cri,
        &pod,
        Some(overhead.clone()),
        Some(resources.clone()),
    )
    .await
    .unwrap();
    assert_eq!(read_cgroup("cpu", &rel, "cpu.shares"), "612");
    assert_eq!(read_cgroup("cpu", &rel, "cpu.cfs_period_us"), "100000");
    assert_eq!(read_cgroup("cpu", &rel, "cpu.cfs_quota_us"), "60000");
    assert_eq!(
        read_cgroup("memory", &rel, "memory.limit_in_bytes"),
        (272u64 << 20).to_string()
    );
    if !node_cpus.is_empty() {
        assert_eq!(read_cgroup("cpuset", &rel, "cpuset.cpus"), node_cpus);
    }
    let check_info = |info: serde_json::Value| {
        assert_eq!(info["resources"]["resources"]["cpuShares"], 512, "{info}");
        assert_eq!(
            info["resources"]["resources"]["memoryLimitInBytes"],
            256 << 20,
            "{info}"
        );
        assert_eq!(
            info["resources"]["overhead"]["memoryLimitInBytes"],
            16 << 20,
            "{info}"
        );
    };
    check_info(verbose_info(&mut env.cri, &pod).await);
    // The pod metrics report the pod's new memory limit.
    let metrics = pod_metrics(&mut env.cri).await;
    let limit = metrics
        .iter()
        .find(|m| m.pod_sandbox_id == pod)
        .unwrap()
        .metrics
        .iter()
        .find(|m| m.name == "container_spec_memory_limit_bytes")
        .unwrap()
        .value
        .unwrap()
        .value;
    assert_eq!(limit, 272 << 20);

    // The record keeps them across a restart.
    env.berthd.restart().await.unwrap();
    env.cri = env.berthd.client().await.unwrap();
    check_info(verbose_info(&mut env.cri, &pod).await);

    // Errors name the pod and the reason.
    let err = update_pod_resources(&mut env.cri, "feedface", None, Some(resources.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    assert!(err.message().contains("feedface"), "{err:?}");
    let err = update_pod_resources(
        &mut env.cri,
        &pod,
        None,
        Some(LinuxContainerResources {
            cpu_shares: -3,
            ..Default::default()
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("resources.cpu_shares"), "{err:?}");
    // A pod in berthd's shared default parent has no cgroup of its own.
    let shared_pc = env.pod_config("shared");
    let shared = env.run_pod(&shared_pc).await.unwrap();
    let err = update_pod_resources(&mut env.cri, &shared, None, Some(resources.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("cgroup_parent"), "{err:?}");
    env.remove_pod(&shared).await.unwrap();
    // A stopped pod is not ready.
    calls::stop_pod(&mut env.cri, &pod).await;
    let err = update_pod_resources(&mut env.cri, &pod, None, Some(resources))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains(&pod), "{err:?}");
    env.remove_pod(&pod).await.unwrap();
}

/// The pids of processes whose command line mentions `needle`.
fn pids_running(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd)
            .replace('\0', " ")
            .contains(needle)
        {
            out.push(pid);
        }
    }
    out
}

/// berthd dies (SIGKILL) while RunPodSandbox waits on a CNI plugin that hangs
/// after the bridge plugin already gave the pod an address: the next start
/// runs CNI DEL for the half-created pod, so host-local releases the address,
/// and leaves no pin, pod directory or mount behind.
#[tokio::test]
async fn berthd_killed_during_cni_add_releases_the_address_on_restart() {
    skip_if!(skip::first(&[
        skip::not_root(),
        bridge::unavailable_reason()
    ]));
    let net = TestBridge::new().unwrap();
    let cni = TestPlugins::new().unwrap();
    let conf = cni.conf_dir();
    // ADD hangs (in short sleeps, so killing the shell ends it); DEL succeeds.
    let plugin = cni.add(
        "hangafterbridge",
        "#!/bin/sh\ncat >/dev/null\nif [ \"$CNI_COMMAND\" = ADD ]; then\n  i=0; while [ $i -lt 120 ]; do sleep 1; i=$((i+1)); done\nfi\nexit 0\n",
    )
    .unwrap();
    net.write_conf(&conf, &[serde_json::json!({"type": "hangafterbridge"})])
        .unwrap();
    let options = cni.berthd_options(BerthdOptions::default());
    let mut berthd = Berthd::start_with(options.cni_setting("plugin_timeout_secs = 120"))
        .await
        .unwrap();
    let cri = berthd.client().await.unwrap();
    let logs = tempfile::tempdir().unwrap();
    let config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "interrupted".into(),
            uid: "uid-interrupted".into(),
            namespace: "stats-e2e".into(),
            attempt: 0,
        }),
        hostname: "interrupted".into(),
        log_directory: logs.path().display().to_string(),
        ..Default::default()
    };
    let run = {
        let mut cri = cri.clone();
        let config = config.clone();
        tokio::spawn(async move {
            cri.runtime
                .run_pod_sandbox(RunPodSandboxRequest {
                    config: Some(config),
                    runtime_handler: String::new(),
                })
                .await
        })
    };
    let plugin_path = plugin.display().to_string();
    wait::until_now(
        "the bridge ADD and the hanging plugin",
        Duration::from_secs(30),
        || {
            let (ips, pids) = (net.allocations(), pids_running(&plugin_path));
            wait::check(!ips.is_empty() && !pids.is_empty(), (ips, pids))
        },
    )
    .await;
    berthd.kill9().unwrap();
    run.abort();
    for pid in pids_running(&plugin_path) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let state_dir = berthd.state_dir().to_path_buf();
    let entries = |sub: &str| -> Vec<String> {
        std::fs::read_dir(state_dir.join(sub))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().display().to_string())
            .collect()
    };
    assert_eq!(
        net.allocations().len(),
        1,
        "the address is reserved while berthd is down"
    );
    assert_eq!(
        entries("ns").len(),
        1,
        "the netns pin is there while berthd is down"
    );

    berthd.restart().await.unwrap();
    assert_eq!(net.allocations(), Vec::<String>::new(), "address leaked");
    assert_eq!(net.veths(), Vec::<String>::new(), "veth leaked");
    assert_eq!(entries("ns"), Vec::<String>::new());
    assert_eq!(entries("pods"), Vec::<String>::new());
    let berthd_dir = berthd.dir().display().to_string();
    let mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&berthd_dir))
        .map(str::to_string)
        .collect();
    assert_eq!(mounts, Vec::<String>::new());
    let mut cri = berthd.client().await.unwrap();
    let pods = calls::list_pods(&mut cri).await;
    assert!(pods.is_empty(), "{pods:?}");

    // The name is free again: with a network that does not hang, the same pod runs.
    net.write_conf(&conf, &[]).unwrap();
    let pod = calls::run_pod(&mut cri, &config).await;
    assert_eq!(net.allocations().len(), 1);
    calls::teardown_pod(&mut cri, &pod).await;
    assert_eq!(net.allocations(), Vec::<String>::new());
}

//! Pod networking end to end: the real berthd running pods on Debian's CNI
//! plugins (bridge + host-local + portmap), driven over gRPC as kubelet does.
//!
//! Safety: every test bridge gets an iptables rule that drops forwarded traffic
//! leaving it, so pods can reach only each other and the host; the tests send
//! traffic only to the pods they made and to loopback.

use std::process::Command;
use std::time::Duration;

use berth_integration::berthd::{Berthd, BerthdOptions};
use berth_integration::bridge::{self, TestBridge};
use berth_integration::calls::{self, exec_sync, list_pods, pod_ip, run_pod, teardown_pod};
use berth_integration::client::Cri;
use berth_integration::cni::TestPlugins;
use berth_integration::env::{container_config, Cni, TestEnv, TestEnvOptions};
use berth_integration::{skip, skip_if, wait};
use berth_proto::v1::*;

/// The conflist's plugins after the bridge: hostPort support.
fn portmap() -> serde_json::Value {
    serde_json::json!({"type": "portmap", "capabilities": {"portMappings": true}, "snat": true})
}

struct Env {
    cri: Cri,
    busybox: String,
    base: TestEnv,
}

/// Pods on a private bridge with hostPort support, or (`bridge` false) on
/// berthd's private CNI conf dir, empty until the test writes to it.
async fn env(bridge: bool) -> Env {
    let cni = if bridge {
        Cni::Bridge(vec![portmap()])
    } else {
        Cni::AsConfigured
    };
    let base = TestEnv::start_with(TestEnvOptions {
        cni,
        ..TestEnvOptions::for_pods()
    })
    .await
    .unwrap();
    Env {
        cri: base.cri.clone(),
        busybox: base.image("busybox"),
        base,
    }
}

/// The bridge of an `env(true)`.
fn bridge(env: &Env) -> &TestBridge {
    env.base.bridge.as_ref().unwrap()
}

fn pod_config(env: &Env, name: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "net-e2e".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: env.base.logs.path().join(name).display().to_string(),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(pod_namespaces()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The pod's and its containers' namespaces: the pod's network, a pid
/// namespace per container.
fn pod_namespaces() -> NamespaceOption {
    calls::namespaces(NamespaceMode::Pod, NamespaceMode::Container)
}

/// Creates and starts `command` in `pod`; returns the container id.
async fn run_container(
    env: &Env,
    pod: &str,
    pc: &PodSandboxConfig,
    name: &str,
    command: &[&str],
) -> String {
    let config = ContainerConfig {
        linux: Some(LinuxContainerConfig {
            resources: None,
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(pod_namespaces()),
                ..Default::default()
            }),
        }),
        ..container_config(name, &env.busybox, command)
    };
    calls::run_container(&mut env.cri.clone(), pod, pc, config).await
}

async fn exec(cri: &mut Cri, id: &str, cmd: &[&str]) -> ExecSyncResponse {
    exec_sync(cri, id, cmd, 20).await.unwrap()
}

/// Starts `httpd` serving `body` from /www on `port` in a new container of `pod`.
async fn serve(env: &Env, pod: &str, pc: &PodSandboxConfig, body: &str, port: u16) -> String {
    let script = format!(
        "mkdir -p /www && echo {body} > /www/index.html && exec httpd -f -p {port} -h /www"
    );
    run_container(env, pod, pc, "web", &["sh", "-c", &script]).await
}

/// GET / from `addr`, retrying while the server starts.
fn http_get(addr: &str) -> String {
    String::from_utf8_lossy(&bridge::http_get(addr, "/")).into_owned()
}

/// berthd with the network and plugins of `cni`, and `setting` (unless empty)
/// in its `[cni]` table. No images: these pods run no containers.
async fn berthd_with_plugins(cni: &TestPlugins, setting: &str) -> Berthd {
    let mut options = cni.berthd_options(BerthdOptions::default());
    if !setting.is_empty() {
        options = options.cni_setting(setting);
    }
    Berthd::start_with(options).await.unwrap()
}

fn iptables_lines_mentioning(needle: &str) -> Vec<String> {
    let out = Command::new("iptables-save").output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(needle))
        .map(|l| l.to_string())
        .collect()
}

#[tokio::test]
async fn two_pods_get_addresses_and_reach_each_other_and_a_host_port() {
    skip_if!(skip::no_bridge_pod_env());
    let env = env(true).await;
    let net = env.base.bridge.as_ref().unwrap();
    let mut cri = env.cri.clone();

    let mut pa = pod_config(&env, "server");
    pa.dns_config = Some(DnsConfig {
        servers: vec!["10.96.0.10".into()],
        searches: vec![
            "net-e2e.svc.cluster.local".into(),
            "svc.cluster.local".into(),
        ],
        options: vec!["ndots:5".into()],
    });
    let host_port = 20000 + i32::try_from(std::process::id() % 20000).unwrap();
    pa.port_mappings = vec![PortMapping {
        protocol: Protocol::Tcp as i32,
        container_port: 8080,
        host_port,
        host_ip: String::new(),
    }];
    let a = run_pod(&mut cri, &pa).await;
    let pb = pod_config(&env, "client");
    let b = run_pod(&mut cri, &pb).await;

    let ip_a = pod_ip(&mut cri, &a).await;
    let ip_b = pod_ip(&mut cri, &b).await;
    assert!(
        ip_a.starts_with(&net.subnet_prefix),
        "pod a ip {ip_a:?} not from {}.0/24",
        net.subnet_prefix
    );
    assert!(ip_b.starts_with(&net.subnet_prefix), "pod b ip {ip_b:?}");
    assert_ne!(ip_a, ip_b);
    assert_eq!(net.allocations().len(), 2, "{:?}", net.allocations());

    let web = serve(&env, &a, &pa, "hello-from-a", 8080).await;
    let client = run_container(&env, &b, &pb, "client", &["sleep", "3600"]).await;

    // Pod to pod by IP.
    let get = ["wget", "-qO-", &format!("http://{ip_a}:8080/")];
    let fetched = wait::until(
        "pod b to GET pod a's page",
        Duration::from_secs(10),
        async || {
            let r = exec(&mut cri, &client, &get).await;
            let out = String::from_utf8_lossy(&r.stdout).into_owned();
            wait::check(r.exit_code == 0, r).map(|()| out)
        },
    )
    .await;
    assert_eq!(fetched.trim(), "hello-from-a");

    // hostPort through portmap, from the host.
    let body = tokio::task::spawn_blocking(move || http_get(&format!("127.0.0.1:{host_port}")))
        .await
        .unwrap();
    assert!(body.contains("hello-from-a"), "{body}");

    // DNS config and hosts file as requested.
    let r = exec(&mut cri, &web, &["cat", "/etc/resolv.conf"]).await;
    let resolv = String::from_utf8_lossy(&r.stdout).to_string();
    assert!(resolv.contains("nameserver 10.96.0.10"), "{resolv}");
    assert!(
        resolv.contains("search net-e2e.svc.cluster.local svc.cluster.local"),
        "{resolv}"
    );
    assert!(resolv.contains("options ndots:5"), "{resolv}");
    let r = exec(&mut cri, &web, &["cat", "/etc/hosts"]).await;
    let hosts = String::from_utf8_lossy(&r.stdout).to_string();
    assert!(
        hosts
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == [ip_a.as_str(), "server"]),
        "{hosts}"
    );
    let r = exec(&mut cri, &web, &["hostname"]).await;
    assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), "server");

    assert!(
        !iptables_lines_mentioning(&a).is_empty(),
        "portmap rules for pod a expected while it runs"
    );
    teardown_pod(&mut cri, &a).await;
    teardown_pod(&mut cri, &b).await;
    assert_eq!(
        net.allocations(),
        Vec::<String>::new(),
        "IP allocations left"
    );
    assert_eq!(
        net.veths(),
        Vec::<String>::new(),
        "veths left on the bridge"
    );
    assert_eq!(
        iptables_lines_mentioning(&a),
        Vec::<String>::new(),
        "iptables rules left"
    );
    assert_eq!(
        iptables_lines_mentioning(&b),
        Vec::<String>::new(),
        "iptables rules left"
    );
}

#[tokio::test]
async fn network_ready_follows_the_cni_config_dir() {
    skip_if!(skip::no_bridge_pod_env());
    let net = TestBridge::new().unwrap();
    let env = env(false).await;
    let conf = env.base.berthd.cni_conf_dir();
    let mut cri = env.cri.clone();
    let cond = |s: StatusResponse| -> RuntimeCondition {
        s.status
            .unwrap()
            .conditions
            .into_iter()
            .find(|c| c.r#type == "NetworkReady")
            .unwrap()
    };
    let c = cond(
        cri.runtime
            .status(StatusRequest { verbose: false })
            .await
            .unwrap()
            .into_inner(),
    );
    assert!(!c.status);
    assert_eq!(c.reason, "NetworkPluginNotReady");
    assert!(
        c.message.contains(&conf.display().to_string()),
        "{}",
        c.message
    );
    net.write_conf(conf, &[portmap()]).unwrap();
    wait::until("NetworkReady", Duration::from_secs(10), async || {
        let c = cond(
            cri.runtime
                .status(StatusRequest { verbose: false })
                .await
                .unwrap()
                .into_inner(),
        );
        wait::check(c.status, c)
    })
    .await;
}

#[tokio::test]
async fn removing_a_pod_after_berthd_was_killed_still_releases_its_address() {
    skip_if!(skip::no_bridge_pod_env());
    let mut env = env(true).await;
    let mut cri = env.cri.clone();
    let pc = pod_config(&env, "survivor");
    let pod = run_pod(&mut cri, &pc).await;
    let ip = pod_ip(&mut cri, &pod).await;
    assert_eq!(bridge(&env).allocations(), vec![ip.clone()]);
    env.base.berthd.kill9().unwrap();
    env.base.berthd.restart().await.unwrap();
    let mut cri = env.base.berthd.client().await.unwrap();
    assert_eq!(pod_ip(&mut cri, &pod).await, ip, "pod ip after restart");
    teardown_pod(&mut cri, &pod).await;
    assert_eq!(bridge(&env).allocations(), Vec::<String>::new());
    assert_eq!(bridge(&env).veths(), Vec::<String>::new());
}

#[tokio::test]
async fn many_pod_cycles_leave_no_veth_address_or_rule_behind() {
    skip_if!(skip::no_bridge_pod_env());
    let env = env(true).await;
    let net = env.base.bridge.as_ref().unwrap();
    let mut cri = env.cri.clone();
    let cycles: usize = std::env::var("BERTH_NET_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let mut ids = Vec::new();
    for i in 0..cycles {
        let mut pc = pod_config(&env, &format!("cycle{i}"));
        pc.port_mappings = vec![PortMapping {
            protocol: Protocol::Tcp as i32,
            container_port: 80,
            host_port: 30000 + i32::try_from(i).unwrap(),
            host_ip: String::new(),
        }];
        let pod = run_pod(&mut cri, &pc).await;
        assert!(pod_ip(&mut cri, &pod).await.starts_with(&net.subnet_prefix));
        teardown_pod(&mut cri, &pod).await;
        ids.push(pod);
    }
    assert_eq!(net.allocations(), Vec::<String>::new());
    assert_eq!(net.veths(), Vec::<String>::new());
    // portmap's per-pod rules name the pod id and its address; the chains it
    // shares between pods (CNI-HOSTPORT-*) stay, as with containerd.
    for id in &ids {
        assert_eq!(
            iptables_lines_mentioning(id),
            Vec::<String>::new(),
            "rules of pod {id} left"
        );
    }
    assert_eq!(
        iptables_lines_mentioning(&format!("{}.", net.subnet_prefix)),
        Vec::<String>::new(),
        "rules naming pod addresses left"
    );
}

/// A CNI plugin that fails, then one that hangs: RunPodSandbox answers with a
/// clear error (the plugin's own message, or the timeout) and leaves no pod,
/// namespace pin, pod directory or mount behind.
#[tokio::test]
async fn a_failing_or_hanging_plugin_fails_run_pod_sandbox_and_leaves_nothing() {
    skip_if!(skip::no_bridge_pod_env());
    let cni = TestPlugins::new().unwrap();
    let plugins = [
        (
            "failnet",
            "#!/bin/sh\ncat >/dev/null\nif [ \"$CNI_COMMAND\" = ADD ]; then\n  echo '{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"address pool exhausted\",\"details\":\"test plugin\"}'\n  exit 1\nfi\nexit 0\n",
        ),
        (
            "hangnet",
            "#!/bin/sh\ncat >/dev/null\nif [ \"$CNI_COMMAND\" = ADD ]; then sleep 60; fi\nexit 0\n",
        ),
    ];
    for (name, script) in plugins {
        cni.add(name, script).unwrap();
    }
    let write_conf = |plugin: &str| cni.use_only(&format!("test-{plugin}"), plugin).unwrap();
    write_conf("failnet");
    let berthd = berthd_with_plugins(&cni, "plugin_timeout_secs = 2").await;
    let mut cri = berthd.client().await.unwrap();
    let logs = tempfile::tempdir().unwrap();
    let config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "doomed".into(),
            uid: "uid-doomed".into(),
            namespace: "net-e2e".into(),
            attempt: 0,
        }),
        hostname: "doomed".into(),
        log_directory: logs.path().display().to_string(),
        ..Default::default()
    };
    let run = |cri: &mut Cri| {
        let mut cri = cri.clone();
        let config = config.clone();
        async move {
            cri.runtime
                .run_pod_sandbox(RunPodSandboxRequest {
                    config: Some(config),
                    runtime_handler: String::new(),
                })
                .await
        }
    };
    let nothing_left = |berthd: &Berthd| {
        let mut left = Vec::new();
        for sub in ["ns", "pods"] {
            for e in std::fs::read_dir(berthd.state_dir().join(sub))
                .into_iter()
                .flatten()
                .flatten()
            {
                left.push(e.path().display().to_string());
            }
        }
        let dir = berthd.dir().display().to_string();
        for line in std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
        {
            if line.contains(&dir) {
                left.push(format!("mount: {line}"));
            }
        }
        left
    };

    let err = run(&mut cri).await.unwrap_err();
    assert!(err.message().contains("address pool exhausted"), "{err:?}");
    assert!(err.message().contains("failnet"), "{err:?}");
    assert_eq!(nothing_left(&berthd), Vec::<String>::new());
    let pods = list_pods(&mut cri).await;
    assert!(pods.is_empty(), "{pods:?}");

    write_conf("hangnet");
    let started = std::time::Instant::now();
    let err = run(&mut cri).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err:?}");
    assert!(err.message().contains("hangnet"), "{err:?}");
    assert_eq!(nothing_left(&berthd), Vec::<String>::new());
    // The hung plugin was killed.
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        assert!(
            !cmd.contains(&cni.bin_dir().join("hangnet").display().to_string()),
            "plugin left running: {cmd}"
        );
    }
}

/// CNI DEL runs once per pod: StopPodSandbox tears the network down, and the
/// RemovePodSandbox kubelet sends next does not run the chain again; a pod
/// removed without a stop still gets its DEL. Counted by a plugin that logs
/// every call and hands out a fixed address.
#[tokio::test]
async fn cni_del_runs_once_whether_a_pod_is_stopped_then_removed_or_only_removed() {
    skip_if!(skip::no_bridge_pod_env());
    let cni = TestPlugins::new().unwrap();
    let calls_log = cni.dir().join("calls.log");
    cni.add(
        "countnet",
        &format!(
            "#!/bin/sh\ncat >/dev/null\necho \"$CNI_COMMAND $CNI_CONTAINERID\" >> {}\nif [ \"$CNI_COMMAND\" = ADD ]; then\n  echo '{{\"cniVersion\":\"1.0.0\",\"interfaces\":[{{\"name\":\"eth0\",\"sandbox\":\"'\"$CNI_NETNS\"'\"}}],\"ips\":[{{\"address\":\"10.99.0.2/24\",\"interface\":0}}]}}'\nfi\nexit 0\n",
            calls_log.display()
        ),
    )
    .unwrap();
    cni.use_only("count", "countnet").unwrap();
    let berthd = berthd_with_plugins(&cni, "").await;
    let mut cri = berthd.client().await.unwrap();
    let logs = tempfile::tempdir().unwrap();
    let config = |name: &str| PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "net-e2e".into(),
            attempt: 0,
        }),
        log_directory: logs.path().display().to_string(),
        ..Default::default()
    };
    let calls_for = |id: &str| -> Vec<String> {
        std::fs::read_to_string(&calls_log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.ends_with(id))
            .map(|l| l.split(' ').next().unwrap_or_default().to_string())
            .collect()
    };

    let stopped = run_pod(&mut cri, &config("stopped")).await;
    assert_eq!(pod_ip(&mut cri, &stopped).await, "10.99.0.2");
    cri.runtime
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: stopped.clone(),
        })
        .await
        .unwrap();
    // kubelet may repeat the stop; then it removes.
    cri.runtime
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: stopped.clone(),
        })
        .await
        .unwrap();
    cri.runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: stopped.clone(),
        })
        .await
        .unwrap();
    assert_eq!(calls_for(&stopped), ["ADD", "DEL"]);

    let removed = run_pod(&mut cri, &config("removed")).await;
    cri.runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: removed.clone(),
        })
        .await
        .unwrap();
    assert_eq!(calls_for(&removed), ["ADD", "DEL"]);
    assert!(list_pods(&mut cri).await.is_empty());
}

//! Root tests of the CNI front end against Debian's reference plugins
//! (/usr/lib/cni: bridge, host-local, portmap, loopback) and real network
//! namespaces. Each test owns a bridge `bt<id>`, a 10.250.x.0/24 subnet, its
//! namespaces and a FORWARD rule that drops anything from the bridge that would
//! leave it (the bridge plugin turns on ip_forward); all of it is removed by
//! Drop guards even when an assertion fails. Traffic only goes to the test's
//! own namespaces or the host's addresses on the test bridge.

// Polling with a deadline: the integration harness's own helper, compiled
// in from its source (the shim's tests cannot depend on that crate).
#[path = "../../integration/src/wait.rs"]
mod wait;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use berth_shim::error::Error;
use berth_shim::network::{Cni, CniConfig, PodIps, PodNetwork, PortMapping};

const PLUGINS: &str = "/usr/lib/cni";

fn can_run() -> bool {
    if !nix::unistd::geteuid().is_root() || !Path::new(PLUGINS).join("bridge").exists() {
        eprintln!("skipping: needs root and containernetworking-plugins in {PLUGINS}");
        return false;
    }
    true
}

/// Runs a shell command; returns (success, stdout + stderr).
fn sh(cmd: &str) -> (bool, String) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("run sh");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn must(cmd: &str) -> String {
    let (ok, out) = sh(cmd);
    assert!(ok, "{cmd}: {out}");
    out
}

fn unique() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    (std::process::id().wrapping_mul(7919) ^ nanos ^ (n << 20)) & 0xff_ffff
}

/// ip_forward as found before the first fixture, restored after the last.
static FORWARDING: Mutex<(usize, Option<String>)> = Mutex::new((0, None));
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// One test's network world; Drop tears everything down.
struct Fixture {
    dir: tempfile::TempDir,
    bridge: String,
    /// Third octet of 10.250.x.0/24.
    subnet: u8,
    net_name: String,
    /// `cniVersion` of the written config.
    cni_version: &'static str,
    cfg: CniConfig,
    netns: Vec<String>,
    pods: Vec<PodNetwork>,
    servers: Vec<Child>,
}

impl Fixture {
    fn new() -> Fixture {
        let id = unique();
        let bridge = format!("bt{id:06x}");
        // Pick a /24 nothing on the host routes yet.
        let mut subnet = (id % 250) as u8 + 1;
        for _ in 0..250 {
            let (_, routes) = sh(&format!("ip -4 route show 10.250.{subnet}.0/24"));
            if routes.trim().is_empty() {
                break;
            }
            subnet = subnet % 250 + 1;
        }
        {
            let mut f = FORWARDING.lock().unwrap();
            if f.0 == 0 {
                f.1 = std::fs::read_to_string(IP_FORWARD).ok();
            }
            f.0 += 1;
        }
        let dir = tempfile::tempdir().unwrap();
        let conf_dir = dir.path().join("net.d");
        std::fs::create_dir(&conf_dir).unwrap();
        let fx = Fixture {
            net_name: format!("berth-test-{bridge}"),
            cni_version: "1.0.0",
            cfg: CniConfig {
                conf_dir,
                bin_dirs: vec![dir.path().join("bin"), PLUGINS.into()],
                cache_dir: dir.path().join("cache"),
                plugin_timeout_secs: 20,
            },
            dir,
            bridge,
            subnet,
            netns: Vec::new(),
            pods: Vec::new(),
            servers: Vec::new(),
        };
        // Before any plugin runs: nothing from the bridge may be forwarded elsewhere.
        must(&format!(
            "iptables -w -I FORWARD -i {b} ! -o {b} -j DROP",
            b = fx.bridge
        ));
        fx
    }

    fn ipam_dir(&self) -> PathBuf {
        self.dir.path().join("ipam")
    }

    /// Writes the network config: bridge + host-local, then `extra` plugins.
    fn write_conf(&self, extra: &str) {
        self.write_conf_ranges("", extra)
    }

    /// Like `write_conf`, with `more_ranges` after the IPv4 range set.
    fn write_conf_ranges(&self, more_ranges: &str, extra: &str) {
        let conf = format!(
            r#"{{"cniVersion":"{version}","name":"{name}","plugins":[
              {{"type":"bridge","bridge":"{br}","isGateway":true,"ipMasq":false,"hairpinMode":true,
                "ipam":{{"type":"host-local","dataDir":"{data}",
                        "ranges":[[{{"subnet":"10.250.{s}.0/24"}}]{more_ranges}],
                        "routes":[{{"dst":"10.250.{s}.0/24"}}]}}}}{extra}]}}"#,
            version = self.cni_version,
            name = self.net_name,
            br = self.bridge,
            data = self.ipam_dir().display(),
            s = self.subnet,
        );
        std::fs::write(self.cfg.conf_dir.join("10-test.conflist"), conf).unwrap();
    }

    /// A fake plugin in the test's bin dir (searched before the real ones).
    fn fake_plugin(&self, name: &str, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        let bin = self.dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let p = bin.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// A fresh namespace at /run/netns/<name> and a pod description for it.
    fn pod(&mut self) -> PodNetwork {
        let id = unique();
        let ns = format!("berth-nt-{id:06x}");
        must(&format!("ip netns add {ns}"));
        self.netns.push(ns.clone());
        let pod = PodNetwork {
            pod_id: format!("pod{id:06x}"),
            netns: PathBuf::from(format!("/run/netns/{ns}")),
            name: format!("web-{id:x}"),
            namespace: "default".into(),
            uid: format!("uid-{id:x}"),
            ..Default::default()
        };
        self.pods.push(pod.clone());
        pod
    }

    /// Serves `body` over HTTP on port 8080 inside the pod's namespace.
    fn serve(&mut self, pod: &PodNetwork, body: &str) {
        let www = self.dir.path().join(format!("www-{}", pod.pod_id));
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("index.html"), body).unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net={}", pod.netns.display()))
            .args(["busybox", "httpd", "-f", "-p", "8080", "-h"])
            .arg(&www)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.servers.push(child);
        let what = format!("httpd in {} to listen", pod.pod_id);
        wait::until_blocking(&what, Duration::from_secs(5), || {
            let (_, out) = sh(&format!("nsenter --net={} ss -ltn", pod.netns.display()));
            wait::check(out.contains(":8080"), out)
        });
    }

    /// IPs host-local still has allocated.
    fn allocations(&self) -> Vec<String> {
        let dir = self.ipam_dir().join(&self.net_name);
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        rd.filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
            .collect()
    }

    /// Interfaces enslaved to the test bridge (the pods' host-side veths).
    fn veths(&self) -> String {
        sh(&format!("ip -o link show master {}", self.bridge)).1
    }

    fn cache_entries(&self) -> usize {
        std::fs::read_dir(&self.cfg.cache_dir)
            .map(|rd| rd.count())
            .unwrap_or(0)
    }

    fn in_subnet(&self, ips: &PodIps) -> bool {
        ips.ip.starts_with(&format!("10.250.{}.", self.subnet)) && ips.additional_ips.is_empty()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
        // Release whatever a failed test left set up, with a runtime of our own
        // (we may be dropping inside the test's runtime).
        let cfg = self.cfg.clone();
        let pods = std::mem::take(&mut self.pods);
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            let cni = Cni::new(cfg);
            for p in &pods {
                let _ = rt.block_on(cni.teardown(p));
            }
        })
        .join();
        for ns in &self.netns {
            let _ = sh(&format!("ip netns del {ns}"));
        }
        let _ = sh(&format!("ip link del {}", self.bridge));
        let _ = sh(&format!(
            "iptables -w -D FORWARD -i {b} ! -o {b} -j DROP",
            b = self.bridge
        ));
        let mut f = FORWARDING.lock().unwrap();
        f.0 -= 1;
        if f.0 == 0 {
            if let Some(orig) = f.1.take() {
                let _ = std::fs::write(IP_FORWARD, orig);
            }
        }
    }
}

fn iptables_rules() -> String {
    must("iptables-save")
}

#[tokio::test(flavor = "multi_thread")]
async fn two_pods_get_distinct_ips_and_talk_to_each_other() {
    if !can_run() {
        return;
    }
    let mut fx = Fixture::new();
    fx.write_conf("");
    let cni = Cni::new(fx.cfg.clone());
    assert!(cni.status().ready);
    let (a, b) = (fx.pod(), fx.pod());
    let ip_a = cni.setup(&a).await.unwrap();
    let ip_b = cni.setup(&b).await.unwrap();
    assert!(
        fx.in_subnet(&ip_a) && fx.in_subnet(&ip_b),
        "{ip_a:?} {ip_b:?}"
    );
    assert_ne!(ip_a.ip, ip_b.ip);
    assert_eq!(fx.allocations().len(), 2);
    // A retried setup (kubelet retrying RunPodSandbox) returns the same
    // addresses without running the plugins again.
    assert_eq!(cni.setup(&a).await.unwrap(), ip_a);
    assert_eq!(fx.allocations().len(), 2);
    assert_eq!(fx.cache_entries(), 2);

    // The address is on eth0 inside the pod, and lo is up (built-in loopback network).
    let addrs = must(&format!("nsenter --net={} ip -o addr", a.netns.display()));
    assert!(
        addrs.contains(&format!("eth0    inet {}/24", ip_a.ip)),
        "{addrs}"
    );
    assert!(addrs.contains("lo    inet 127.0.0.1/8"), "{addrs}");

    must(&format!(
        "nsenter --net={} busybox ping -c 1 -W 3 {}",
        a.netns.display(),
        ip_b.ip
    ));
    fx.serve(&b, "hello from b");
    let got = must(&format!(
        "nsenter --net={} curl -sS --max-time 5 http://{}:8080/",
        a.netns.display(),
        ip_b.ip
    ));
    assert_eq!(got, "hello from b");

    cni.check(&a).await.unwrap();

    cni.teardown(&a).await.unwrap();
    cni.teardown(&b).await.unwrap();
    assert_eq!(fx.veths().trim(), "", "veths left on the bridge");
    assert!(fx.allocations().is_empty(), "{:?}", fx.allocations());
    assert_eq!(fx.cache_entries(), 0);
    // DEL is idempotent.
    cni.teardown(&a).await.unwrap();
    assert!(matches!(cni.check(&a).await, Err(Error::NotFound(_))));
}

#[tokio::test(flavor = "multi_thread")]
async fn host_port_reaches_the_pod_and_teardown_removes_its_rules() {
    if !can_run() {
        return;
    }
    let mut fx = Fixture::new();
    fx.write_conf(r#",{"type":"portmap","capabilities":{"portMappings":true},"snat":true}"#);
    let cni = Cni::new(fx.cfg.clone());
    let mut pod = fx.pod();
    let host_port = 30000 + i32::try_from(unique() % 20000).unwrap();
    pod.port_mappings = vec![PortMapping {
        container_port: 8080,
        host_port,
        protocol: "TCP".into(),
        host_ip: String::new(),
    }];
    let before = iptables_rules();
    assert!(!before.contains(&pod.pod_id));
    let ips = cni.setup(&pod).await.unwrap();
    fx.serve(&pod, "via hostport");
    let during = iptables_rules();
    assert!(
        during.contains(&pod.pod_id),
        "portmap rules not found:\n{during}"
    );
    assert!(during.contains(&format!("--to-destination {}:8080", ips.ip)));

    // The host reaches the pod through the host port on its bridge address...
    let gateway = format!("10.250.{}.1", fx.subnet);
    let got = must(&format!(
        "curl -sS --max-time 5 http://{gateway}:{host_port}/"
    ));
    assert_eq!(got, "via hostport");
    // ...and on 127.0.0.1: portmap sets route_localnet on the bridge and
    // masquerades the 127.0.0.0/8 source so the pod can answer.
    let localnet = std::fs::read_to_string(format!(
        "/proc/sys/net/ipv4/conf/{}/route_localnet",
        fx.bridge
    ))
    .unwrap();
    assert_eq!(localnet.trim(), "1");
    let got = must(&format!(
        "curl -sS --max-time 5 http://127.0.0.1:{host_port}/"
    ));
    assert_eq!(got, "via hostport");

    cni.teardown(&pod).await.unwrap();
    let after = iptables_rules();
    for line in after.lines() {
        assert!(
            !line.contains(&pod.pod_id) && !line.contains(&format!("10.250.{}.", fx.subnet)),
            "rule left behind: {line}"
        );
    }
    assert_eq!(fx.veths().trim(), "");
    assert!(fx.allocations().is_empty());
    let (ok, _) = sh(&format!(
        "curl -sS --max-time 2 http://{gateway}:{host_port}/"
    ));
    assert!(!ok, "host port still answers after teardown");
}

#[tokio::test(flavor = "multi_thread")]
async fn teardown_after_a_restart_uses_the_cached_result() {
    if !can_run() {
        return;
    }
    let mut fx = Fixture::new();
    fx.write_conf("");
    let pod = fx.pod();
    let ips = {
        let cni = Cni::new(fx.cfg.clone());
        cni.setup(&pod).await.unwrap()
    };
    assert_eq!(fx.allocations(), vec![ips.ip.clone()]);
    // The operator removes the config, then berthd restarts: the cached config
    // and result still drive CHECK and DEL.
    std::fs::remove_file(fx.cfg.conf_dir.join("10-test.conflist")).unwrap();
    let cni = Cni::new(fx.cfg.clone());
    assert!(!cni.status().ready);
    assert_eq!(cni.cached_ips(&pod.pod_id).unwrap(), Some(ips.clone()));
    // A retried setup answers from the cache even without a config.
    assert_eq!(cni.setup(&pod).await.unwrap(), ips);
    cni.check(&pod).await.unwrap();
    // CHECK notices when the pod's interface is gone.
    must(&format!(
        "nsenter --net={} ip link del eth0",
        pod.netns.display()
    ));
    let e = cni.check(&pod).await.unwrap_err().to_string();
    assert!(e.contains("bridge") && e.contains("CHECK"), "{e}");

    cni.teardown(&pod).await.unwrap();
    assert!(
        fx.allocations().is_empty(),
        "ip not released: {:?}",
        fx.allocations()
    );
    assert_eq!(fx.cache_entries(), 0);
    assert_eq!(cni.cached_ips(&pod.pod_id).unwrap(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn teardown_of_a_pod_whose_namespace_is_gone_releases_its_ip() {
    if !can_run() {
        return;
    }
    let mut fx = Fixture::new();
    fx.write_conf("");
    let cni = Cni::new(fx.cfg.clone());
    let pod = fx.pod();
    cni.setup(&pod).await.unwrap();
    must(&format!("ip netns del {}", fx.netns[0]));
    assert!(!pod.netns.exists());
    cni.teardown(&pod).await.unwrap();
    assert!(fx.allocations().is_empty());
    // The kernel destroys a released namespace (and the veth with it)
    // asynchronously; nothing of ours holds it.
    wait::until_now("the veth to go", Duration::from_secs(10), || {
        let veths = fx.veths();
        wait::check(veths.trim().is_empty(), veths)
    })
    .await;
    // So is one whose pin file outlived its mount (berthd unmounted it first).
    let pinned = fx.pod();
    cni.setup(&pinned).await.unwrap();
    must(&format!("umount {}", pinned.netns.display()));
    assert!(pinned.netns.exists());
    cni.teardown(&pinned).await.unwrap();
    assert!(fx.allocations().is_empty(), "{:?}", fx.allocations());
    let e = cni.setup(&pinned).await.unwrap_err().to_string();
    assert!(e.contains("not a network namespace"), "{e}");
    // A pod berthd never set up is fine too.
    let mut unknown = pod.clone();
    unknown.pod_id = "never-set-up".into();
    cni.teardown(&unknown).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_plugin_is_reported_and_its_list_undone() {
    if !can_run() {
        return;
    }
    let mut fx = Fixture::new();
    let del_log = fx.dir.path().join("failer-del.log");
    fx.fake_plugin(
        "failer",
        &format!(
            r#"case "$CNI_COMMAND" in
  ADD) cat >/dev/null; echo '{{"cniVersion":"1.0.0","code":11,"msg":"cannot program the widget","details":"widget busy"}}'; echo "widget trace" >&2; exit 1;;
  DEL) cat > {log}; exit 0;;
esac"#,
            log = del_log.display()
        ),
    );
    fx.write_conf(r#",{"type":"failer"}"#);
    let cni = Cni::new(fx.cfg.clone());
    let pod = fx.pod();
    let e = cni.setup(&pod).await.unwrap_err();
    let msg = e.to_string();
    for want in [
        "failer",
        &fx.net_name,
        "ADD",
        &pod.pod_id,
        "code 11: cannot program the widget (widget busy)",
        "stderr: widget trace",
    ] {
        assert!(msg.contains(want), "{msg:?} lacks {want:?}");
    }
    // The undo ran DEL for the failed plugin with the bridge's result...
    let del_stdin: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&del_log).unwrap()).unwrap();
    assert_eq!(del_stdin["prevResult"]["cniVersion"], "1.0.0");
    assert!(del_stdin["prevResult"]["ips"][0]["address"]
        .as_str()
        .unwrap()
        .starts_with(&format!("10.250.{}.", fx.subnet)));
    // ...and for the bridge: nothing is left.
    assert!(fx.allocations().is_empty(), "{:?}", fx.allocations());
    assert_eq!(fx.veths().trim(), "");
    assert_eq!(fx.cache_entries(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_plugin_times_out_and_leaves_nothing() {
    if !can_run() {
        return;
    }
    let mut fx = Fixture::new();
    fx.cfg.plugin_timeout_secs = 1;
    fx.fake_plugin(
        "hanger",
        r#"case "$CNI_COMMAND" in ADD) sleep 60;; *) exit 0;; esac"#,
    );
    fx.write_conf(r#",{"type":"hanger"}"#);
    let cni = Cni::new(fx.cfg.clone());
    let pod = fx.pod();
    let start = Instant::now();
    let e = cni.setup(&pod).await.unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert!(matches!(e, Error::DeadlineExceeded(_)), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("hanger") && msg.contains("1s"), "{msg}");
    let (_, procs) = sh("ps -eo args");
    assert!(!procs.contains(&fx.dir.path().join("bin/hanger").display().to_string()));
    assert!(fx.allocations().is_empty(), "{:?}", fx.allocations());
    assert_eq!(fx.veths().trim(), "");
    assert_eq!(fx.cache_entries(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn setup_needs_a_config_and_a_namespace() {
    if !can_run() {
        return;
    }
    let mut fx = Fixture::new();
    let cni = Cni::new(fx.cfg.clone());
    let pod = fx.pod();
    let s = cni.status();
    assert!(!s.ready && s.reason == "NetworkPluginNotReady", "{s:?}");
    assert!(s.message.contains(&fx.cfg.conf_dir.display().to_string()));
    let e = cni.setup(&pod).await.unwrap_err();
    assert!(matches!(e, Error::FailedPrecondition(_)), "{e:?}");
    fx.write_conf("");
    assert!(cni.status().ready);
    let mut missing = pod.clone();
    missing.netns = fx.dir.path().join("no-such-netns");
    let e = cni.setup(&missing).await.unwrap_err();
    assert!(e.to_string().contains("no-such-netns"), "{e}");
    assert!(fx.allocations().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn dual_stack_pods_report_ipv4_first_and_ipv6_as_additional() {
    if !can_run() {
        return;
    }
    let mut fx = Fixture::new();
    let v6 = format!("fd00:250:{}::", fx.subnet);
    fx.write_conf_ranges(&format!(r#",[{{"subnet":"{v6}/64"}}]"#), "");
    let cni = Cni::new(fx.cfg.clone());
    let pod = fx.pod();
    let ips = cni.setup(&pod).await.unwrap();
    assert!(
        ips.ip.starts_with(&format!("10.250.{}.", fx.subnet)),
        "{ips:?}"
    );
    assert_eq!(ips.additional_ips.len(), 1, "{ips:?}");
    assert!(ips.additional_ips[0].starts_with(&v6), "{ips:?}");
    let addrs = must(&format!(
        "nsenter --net={} ip -o addr show eth0",
        pod.netns.display()
    ));
    assert!(addrs.contains(&ips.additional_ips[0]), "{addrs}");
    cni.teardown(&pod).await.unwrap();
    assert!(fx.allocations().is_empty(), "{:?}", fx.allocations());
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_setups_get_distinct_addresses() {
    if !can_run() {
        return;
    }
    let mut fx = Fixture::new();
    fx.write_conf("");
    let cni = std::sync::Arc::new(Cni::new(fx.cfg.clone()));
    let pods: Vec<PodNetwork> = (0..6).map(|_| fx.pod()).collect();
    let tasks: Vec<_> = pods
        .iter()
        .cloned()
        .map(|p| {
            let cni = cni.clone();
            tokio::spawn(async move { cni.setup(&p).await })
        })
        .collect();
    let mut ips = Vec::new();
    for t in tasks {
        ips.push(t.await.unwrap().unwrap().ip);
    }
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 6, "{ips:?}");
    assert_eq!(fx.allocations().len(), 6);
    let tasks: Vec<_> = pods
        .iter()
        .cloned()
        .map(|p| {
            let cni = cni.clone();
            tokio::spawn(async move { cni.teardown(&p).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert!(fx.allocations().is_empty(), "{:?}", fx.allocations());
    assert_eq!(fx.veths().trim(), "");
}

#[tokio::test(flavor = "multi_thread")]
async fn older_spec_versions_work_end_to_end() {
    if !can_run() {
        return;
    }
    for version in ["0.4.0", "0.3.1"] {
        let mut fx = Fixture::new();
        fx.cni_version = version;
        fx.write_conf("");
        let cni = Cni::new(fx.cfg.clone());
        let pod = fx.pod();
        let ips = cni.setup(&pod).await.unwrap();
        assert!(fx.in_subnet(&ips), "{version}: {ips:?}");
        let cached = std::fs::read_to_string(
            fx.cfg
                .cache_dir
                .join(format!("{}-{}.json", fx.net_name, pod.pod_id)),
        )
        .unwrap();
        // 0.3.x/0.4.0 results carry a per-address version field.
        assert!(cached.contains(r#""version":"4""#), "{version}: {cached}");
        match (version, cni.check(&pod).await) {
            ("0.4.0", r) => r.unwrap(),
            (_, r) => assert!(matches!(r, Err(Error::FailedPrecondition(_))), "{r:?}"),
        }
        cni.teardown(&pod).await.unwrap();
        assert!(
            fx.allocations().is_empty(),
            "{version}: {:?}",
            fx.allocations()
        );
        assert_eq!(fx.veths().trim(), "", "{version}");
    }
}

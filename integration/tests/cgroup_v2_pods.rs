//! berthd on a pure cgroup v2 kernel: a pod under a kubelet-style cgroup parent,
//! run inside a qemu guest (this machine is hybrid).
//!
//! As in `runtime/tests/cgroup_v2.rs`, the `#[ignore]`d tests are the guest's;
//! the plain test boots the guest through `scripts/cgroup-v2-vm.sh` and runs
//! this same binary inside it with `--ignored`, with the guest's output
//! streamed to stdout.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use berth_integration::calls::{
    container_status, exec_sync, remove_container, run_container, stop_container, teardown_pod,
    wait_exited,
};
use berth_integration::env::{container_config, TestEnv};
use berth_proto::v1::*;

#[test]
fn cgroup_v2_pod_tests_pass_in_a_pure_v2_guest() {
    // The guest has no cargo: berthd and berth-monitor must be built here.
    berth_integration::berthd::berthd_binary().expect("build berthd");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/cgroup-v2-vm.sh");
    let exe = std::env::current_exe().expect("current_exe");
    let status = Command::new("bash")
        .arg(&script)
        .args(["--timeout", "900", "--env", "BERTH_NO_BUILD=1", "--"])
        .arg(&exe)
        .args(["--ignored", "--test-threads=1", "--nocapture"])
        .status()
        .expect("run scripts/cgroup-v2-vm.sh");
    assert!(
        status.success(),
        "the cgroup v2 guest run failed ({status}); its output is above"
    );
}

const CG: &str = "/sys/fs/cgroup";

fn assert_on_v2() {
    assert!(
        Path::new(CG).join("cgroup.controllers").exists() && !Path::new(CG).join("memory").exists(),
        "guest tests run only on a pure cgroup v2 host (see cgroup_v2_pod_tests_pass_in_a_pure_v2_guest)"
    );
}

fn rd(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

/// The pod cgroup as the kubelet's cgroupfs driver makes it before
/// RunPodSandbox: controllers enabled down the chain, a pod-level memory
/// limit, no processes of its own.
fn kubelet_pod_cgroup(uid: &str) -> PathBuf {
    let mut cur = PathBuf::from(CG);
    for comp in ["kubepods", "burstable", &format!("pod{uid}")] {
        std::fs::write(
            cur.join("cgroup.subtree_control"),
            "+cpu +cpuset +io +memory +pids +hugetlb",
        )
        .unwrap();
        cur = cur.join(comp);
        std::fs::create_dir_all(&cur).unwrap();
    }
    std::fs::write(cur.join("memory.max"), (512u64 << 20).to_string()).unwrap();
    cur
}

async fn exec_out(cri: &mut berth_integration::client::Cri, id: &str, script: &str) -> String {
    let r = exec_sync(cri, id, &["sh", "-c", script], 60)
        .await
        .unwrap_or_else(|e| panic!("exec {script:?}: {e}"));
    assert_eq!(
        r.exit_code,
        0,
        "exec {script:?}: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    String::from_utf8_lossy(&r.stdout).trim().to_string()
}

#[tokio::test]
#[ignore = "guest test: run by cgroup_v2_pod_tests_pass_in_a_pure_v2_guest"]
async fn v2_pod_lifecycle_under_a_kubelet_cgroup_parent() {
    assert_on_v2();
    let mut env = TestEnv::start_for_pods().await.unwrap();
    let mut cri = env.cri.clone();
    let busybox = env.image("busybox");

    // What the kubelet asks first: the driver, and (for crictl info) the layout.
    let rc = cri
        .runtime
        .runtime_config(RuntimeConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        rc.linux.unwrap().cgroup_driver,
        CgroupDriver::Cgroupfs as i32
    );
    let st = cri
        .runtime
        .status(StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner();
    let cg: serde_json::Value = serde_json::from_str(&st.info["cgroup"]).unwrap();
    assert_eq!(cg["version"], "v2", "{cg}");
    assert_eq!(cg["driver"], "cgroupfs", "{cg}");
    for c in ["cpu", "cpuset", "io", "memory", "pids", "hugetlb"] {
        assert!(
            cg["controllers"].as_array().unwrap().iter().any(|v| v == c),
            "{c} missing from {cg}"
        );
    }
    let uid = "cgv2-lifecycle";
    let pod_dir = kubelet_pod_cgroup(uid);
    let pc = PodSandboxConfig {
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: format!("/kubepods/burstable/pod{uid}"),
            ..Default::default()
        }),
        ..env.pod_config("v2pod")
    };
    let pod = env.run_pod(&pc).await.unwrap();

    let mut cfg = container_config("app", &busybox, &["sh", "-c", "echo up; exec sleep 1000"]);
    cfg.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            cpu_period: 100_000,
            cpu_quota: 20_000,
            cpu_shares: 512,
            unified: HashMap::from([("memory.oom.group".to_string(), "1".to_string())]),
            ..Default::default()
        }),
        ..Default::default()
    });
    let app = run_container(&mut cri, &pod, &pc, cfg).await;
    let dir = pod_dir.join(&app);
    assert!(dir.is_dir(), "{} missing", dir.display());
    assert_eq!(rd(&dir.join("memory.max")), (64u64 << 20).to_string());
    assert_eq!(rd(&dir.join("cpu.max")), "20000 100000");
    assert_eq!(rd(&dir.join("cpu.weight")), "20");
    assert_eq!(rd(&dir.join("memory.oom.group")), "1");
    assert_eq!(
        rd(&pod_dir.join("cgroup.procs")),
        "",
        "the pod cgroup holds no process"
    );

    // Inside: a private cgroup namespace whose root is the container's cgroup,
    // and the device filter lets /dev/null through but not a block device
    // (mknod of any node is allowed, as containerd's default rules do).
    assert_eq!(
        exec_out(&mut cri, &app, "cat /proc/self/cgroup").await,
        "0::/"
    );
    assert_eq!(
        exec_out(&mut cri, &app, "cat /sys/fs/cgroup/memory.max").await,
        (64u64 << 20).to_string()
    );
    let (maj, min) = {
        let dev = rd(Path::new("/sys/block/vda/dev"));
        let (a, b) = dev.split_once(':').unwrap();
        (a.to_string(), b.to_string())
    };
    assert_eq!(
        exec_out(
            &mut cri,
            &app,
            &format!(
                "head -c1 /dev/null && echo null-ok; mknod /tmp/d b {maj} {min} && echo mknod-ok; head -c1 /tmp/d >/dev/null 2>&1 && echo open-ok || echo open-denied"
            )
        )
        .await,
        "null-ok\nmknod-ok\nopen-denied"
    );

    // Stats from memory.current/memory.stat/cpu.stat.
    let st = cri
        .runtime
        .container_stats(ContainerStatsRequest {
            container_id: app.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    assert!(st.memory.unwrap().working_set_bytes.unwrap().value > 0);
    assert!(st.cpu.unwrap().usage_core_nano_seconds.unwrap().value > 0);
    let ps = cri
        .runtime
        .pod_sandbox_stats(PodSandboxStatsRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    let linux = ps.linux.unwrap();
    assert!(linux.memory.unwrap().working_set_bytes.unwrap().value > 0);
    assert!(linux.cpu.unwrap().usage_core_nano_seconds.unwrap().value > 0);
    assert_eq!(linux.containers.len(), 1);

    // UpdateContainerResources changes memory.max and cpu.max live.
    cri.runtime
        .update_container_resources(UpdateContainerResourcesRequest {
            container_id: app.clone(),
            linux: Some(LinuxContainerResources {
                memory_limit_in_bytes: 96 << 20,
                cpu_period: 100_000,
                cpu_quota: 50_000,
                ..Default::default()
            }),
            windows: None,
            annotations: HashMap::new(),
        })
        .await
        .unwrap();
    assert_eq!(rd(&dir.join("memory.max")), (96u64 << 20).to_string());
    assert_eq!(rd(&dir.join("cpu.max")), "50000 100000");
    assert_eq!(
        exec_out(&mut cri, &app, "cat /sys/fs/cgroup/memory.max").await,
        (96u64 << 20).to_string()
    );

    // An OOM kill in the pod is reported as OOMKilled.
    let mut hog = container_config(
        "hog",
        &busybox,
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=128M", "count=1"],
    );
    hog.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            memory_limit_in_bytes: 32 << 20,
            memory_swap_limit_in_bytes: 32 << 20,
            ..Default::default()
        }),
        ..Default::default()
    });
    let hog = run_container(&mut cri, &pod, &pc, hog).await;
    let s = wait_exited(&mut cri, &hog, Duration::from_secs(120)).await;
    assert_eq!(s.reason, "OOMKilled", "{s:?}");
    assert_eq!(s.exit_code, 137);

    // Stop empties the cgroup, remove deletes it; the pod cgroup stays the
    // kubelet's, with none of our cgroups left in it.
    stop_container(&mut cri, &app, 2).await;
    assert_eq!(
        container_status(&mut cri, &app).await.state,
        ContainerState::ContainerExited as i32
    );
    assert_eq!(rd(&dir.join("cgroup.procs")), "");
    remove_container(&mut cri, &app).await;
    assert!(!dir.exists(), "container cgroup left behind");
    teardown_pod(&mut cri, &pod).await;
    let left: Vec<_> = std::fs::read_dir(&pod_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left in the pod cgroup: {left:?}");
    std::fs::remove_dir(&pod_dir).unwrap();
}

//! Root tests for cgroup v2, run inside a qemu guest with a pure v2 hierarchy.
//!
//! This machine is hybrid (v1 controllers), so the `#[ignore]`d tests below are
//! the guest's: the one plain test boots Debian's 6.1 kernel with
//! `cgroup_no_v1=all` through `scripts/cgroup-v2-vm.sh` and runs this same test
//! binary inside it with `--ignored`, streaming the guest's output. Every
//! ignored test here is a guest test, and each checks it is on v2 first.

mod common;

use berth_runtime::cgroups::{detect_layout, Layout};
use berth_runtime::Status;
use common::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

#[test]
fn cgroup_v2_root_tests_pass_in_a_pure_v2_guest() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/cgroup-v2-vm.sh");
    let exe = std::env::current_exe().expect("current_exe");
    // The guest's tests exit 0 or 101; the wrapper reports that code and exits
    // with it plus 100, so that every run also checks that the harness passes
    // a non-zero exit code and the guest's output through (a harness that
    // always said 0, or lost the output, would fail here).
    let wrapper = r#""$0" --ignored --test-threads=1 --nocapture; rc=$?; echo "guest-tests-exit=$rc"; exit $((rc + 100))"#;
    let mut child = Command::new("bash")
        .arg(&script)
        .args(["--timeout", "900", "--", "sh", "-c", wrapper])
        .arg(&exe)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run scripts/cgroup-v2-vm.sh");
    // Streamed as it comes (io::stdout is not captured by libtest) and kept.
    let mut seen = String::new();
    for line in std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap())) {
        let line = line.unwrap_or_default();
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), "{line}");
        seen.push_str(&line);
        seen.push('\n');
    }
    let status = child.wait().unwrap();
    assert!(
        seen.lines().any(|l| l == "guest-tests-exit=0"),
        "the guest tests failed or did not report; output above ({status})"
    );
    assert_eq!(status.code(), Some(100), "the harness lost the exit code");
    assert!(
        seen.contains("controllers: cpuset cpu io memory hugetlb pids"),
        "not a v2 guest"
    );
}

const CG: &str = "/sys/fs/cgroup";

fn on_v2() {
    assert_eq!(
        detect_layout(Path::new(CG)).unwrap(),
        Layout::V2,
        "guest tests run only on a pure cgroup v2 host (see cgroup_v2_root_tests_pass_in_a_pure_v2_guest)"
    );
}

/// A kubelet-style pod cgroup, made the way the kubelet makes it (controllers
/// enabled down the chain, no processes of its own), removed on drop.
struct PodCgroup(PathBuf);

impl PodCgroup {
    fn new(uid: &str) -> PodCgroup {
        let rel = PathBuf::from(format!("kubepods/burstable/pod{uid}"));
        let mut cur = PathBuf::from(CG);
        for comp in rel.components() {
            std::fs::write(
                cur.join("cgroup.subtree_control"),
                "+cpu +memory +pids +io +cpuset +hugetlb",
            )
            .unwrap();
            cur = cur.join(comp);
            std::fs::create_dir_all(&cur).unwrap();
        }
        PodCgroup(rel)
    }
    fn container_path(&self, id: &str) -> String {
        format!("/{}/{id}", self.0.display())
    }
    fn dir(&self, id: &str) -> PathBuf {
        Path::new(CG).join(&self.0).join(id)
    }
}

impl Drop for PodCgroup {
    fn drop(&mut self) {
        let mut p = Path::new(CG).join(&self.0);
        while p != Path::new(CG) {
            if std::fs::remove_dir(&p).is_err() {
                break;
            }
            p.pop();
        }
    }
}

fn rd(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()))
        .trim()
        .to_string()
}

/// The guest's scratch disk (`/dev/vda`, a qemu null device), as (major, minor).
fn scratch_disk() -> (u32, u32) {
    let dev = std::fs::read_to_string("/sys/block/vda/dev").expect("/sys/block/vda/dev");
    let (a, b) = dev.trim().split_once(':').unwrap();
    (a.parse().unwrap(), b.parse().unwrap())
}

#[test]
#[ignore = "guest test: run by cgroup_v2_root_tests_pass_in_a_pure_v2_guest"]
fn v2_limits_for_every_controller_are_written_and_read_back_under_a_pod_cgroup() {
    on_v2();
    let pod = PodCgroup::new("limits-1");
    let mut f = Fixture::new("limits");
    let (maj, min) = scratch_disk();
    f.spec["linux"]["cgroupsPath"] = json!(pod.container_path(&f.id));
    f.spec["linux"]["resources"] = json!({
        "devices": [{"allow": false, "access": "rwm"}],
        "memory": {"limit": 96 << 20, "reservation": 32 << 20, "swap": 128 << 20},
        "cpu": {"shares": 512, "quota": 30000, "period": 100000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 64},
        "blockIO": {
            "weight": 500,
            "throttleReadBpsDevice": [{"major": maj, "minor": min, "rate": 1048576}],
            "throttleWriteIOPSDevice": [{"major": maj, "minor": min, "rate": 100}]
        },
        "hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}],
        "unified": {"memory.high": (80u64 << 20).to_string(), "memory.oom.group": "1"}
    });
    f.args("exec sleep 1000");
    let c = f.create();
    let dir = pod.dir(&f.id);
    assert_eq!(rd(&dir, "memory.max"), (96u64 << 20).to_string());
    assert_eq!(rd(&dir, "memory.low"), (32u64 << 20).to_string());
    assert_eq!(rd(&dir, "memory.swap.max"), (32u64 << 20).to_string());
    assert_eq!(rd(&dir, "memory.high"), (80u64 << 20).to_string());
    assert_eq!(rd(&dir, "memory.oom.group"), "1");
    assert_eq!(rd(&dir, "cpu.weight"), "20");
    assert_eq!(rd(&dir, "cpu.max"), "30000 100000");
    assert_eq!(rd(&dir, "cpuset.cpus"), "0");
    assert_eq!(rd(&dir, "cpuset.mems"), "0");
    assert_eq!(rd(&dir, "pids.max"), "64");
    assert_eq!(rd(&dir, "io.weight"), "default 4950");
    assert_eq!(
        rd(&dir, "io.max"),
        format!("{maj}:{min} rbps=1048576 wbps=max riops=max wiops=100")
    );
    assert_eq!(rd(&dir, "hugetlb.2MB.max"), (4u64 << 20).to_string());
    // The init is in the container's cgroup, not in the pod's (which must
    // stay without processes to have children with controllers).
    assert_eq!(rd(&dir, "cgroup.procs"), c.pid().to_string());
    assert_eq!(rd(&dir.join(".."), "cgroup.procs"), "");
    c.delete(true).unwrap();
    assert!(!dir.exists(), "container cgroup left behind");
}

#[test]
#[ignore = "guest test: run by cgroup_v2_root_tests_pass_in_a_pure_v2_guest"]
fn v2_oom_kill_is_recorded_as_oom_killed() {
    on_v2();
    let mut f = Fixture::new("oom");
    f.args("tail /dev/zero");
    let limit = 32i64 << 20;
    f.spec["linux"]["resources"]["memory"] = json!({"limit": limit, "swap": limit});
    let c = f.create();
    let dir = Path::new(CG).join(f.cgroup_rel());
    assert_eq!(rd(&dir, "memory.max"), limit.to_string());
    c.start().unwrap();
    let exit = wait_stopped(&c).exit.unwrap();
    assert!(exit.oom_killed, "{exit:?}");
    assert_eq!(exit.signal, Some(9));
    c.delete(true).unwrap();
    assert!(!dir.exists());
}

#[test]
#[ignore = "guest test: run by cgroup_v2_root_tests_pass_in_a_pure_v2_guest"]
fn v2_kill_all_leaves_no_child_of_a_forking_shell() {
    on_v2();
    let mut f = Fixture::new("killall");
    // Forks without pause: a signal-each-pid loop can miss the newest child.
    f.args("while :; do sleep 1000 & done");
    f.spec["linux"]["resources"]["pids"] = json!({"limit": 200});
    let c = f.create();
    c.start().unwrap();
    let dir = Path::new(CG).join(f.cgroup_rel());
    wait_for("a few children", || {
        rd(&dir, "cgroup.procs").lines().count() > 5
    });
    c.kill(libc::SIGKILL, true).unwrap();
    assert_eq!(wait_stopped(&c).exit.unwrap().signal, Some(9));
    wait_for("the cgroup to be empty", || {
        rd(&dir, "cgroup.procs").is_empty()
    });
    assert_eq!(
        rd(&dir, "cgroup.events")
            .lines()
            .find(|l| l.starts_with("populated")),
        Some("populated 0")
    );
    c.delete(true).unwrap();
    assert!(!dir.exists());
}

#[test]
#[ignore = "guest test: run by cgroup_v2_root_tests_pass_in_a_pure_v2_guest"]
fn v2_stats_and_live_update_of_memory_max_and_cpu_max() {
    on_v2();
    let mut f = Fixture::new("update");
    f.args("i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; echo busy-done; exec sleep 1000");
    f.spec["linux"]["resources"]["memory"] = json!({"limit": 128 << 20});
    let c = f.create();
    c.start().unwrap();
    wait_for("the busy loop", || f.log().contains("busy-done"));
    let s = c.stats().unwrap();
    assert!(s.cpu_usage_ns > 0, "{s:?}");
    assert!(s.memory_usage_bytes > 0, "{s:?}");
    assert!(s.memory_working_set_bytes <= s.memory_usage_bytes);
    assert_eq!(s.pids, 1, "{s:?}");
    let dir = Path::new(CG).join(f.cgroup_rel());
    let res: oci_spec::runtime::LinuxResources = serde_json::from_value(json!({
        "memory": {"limit": 64 << 20}, "cpu": {"quota": 50000, "period": 100000}
    }))
    .unwrap();
    c.update(&res).unwrap();
    assert_eq!(rd(&dir, "memory.max"), (64u64 << 20).to_string());
    assert_eq!(rd(&dir, "cpu.max"), "50000 100000");
    assert_eq!(c.state().unwrap().status, Status::Running);
    c.delete(true).unwrap();
}

/// Runs `script` in a container with the guest's scratch disk as `/dev/vda`
/// and `rules` as its device rules; returns its stdout lines.
fn with_disk(name: &str, rules: serde_json::Value, script: &str) -> Vec<String> {
    let mut f = Fixture::new(name);
    let (maj, min) = scratch_disk();
    f.spec["linux"]["devices"] = json!([
        {"path": "/dev/vda", "type": "b", "major": maj, "minor": min, "fileMode": 432}
    ]);
    f.spec["linux"]["resources"]["devices"] = rules;
    f.args(
        &script
            .replace("MAJ", &maj.to_string())
            .replace("MIN", &min.to_string()),
    );
    let st = f.run();
    assert_eq!(st.exit.unwrap().code, 0, "log: {}", f.log());
    f.log_lines("stdout")
}

const DEVICE_PROBE: &str = "head -c1 /dev/null && echo null-ok; \
    head -c1 /dev/vda >/dev/null 2>&1 && echo vda-read || echo vda-read-denied; \
    dd if=/dev/zero of=/dev/vda bs=512 count=1 2>/dev/null && echo vda-write || echo vda-write-denied; \
    mknod /tmp/disk b MAJ MIN 2>/dev/null && echo mknod-ok || echo mknod-denied; \
    mknod /tmp/null c 1 3 && echo mknod-null-ok";

#[test]
#[ignore = "guest test: run by cgroup_v2_root_tests_pass_in_a_pure_v2_guest"]
fn v2_device_filter_denies_a_block_device_but_not_dev_null() {
    on_v2();
    let out = with_disk(
        "dev-deny",
        json!([{"allow": false, "access": "rwm"}]),
        DEVICE_PROBE,
    );
    assert_eq!(
        out,
        vec![
            "null-ok",
            "vda-read-denied",
            "vda-write-denied",
            "mknod-denied",
            "mknod-null-ok"
        ]
    );
}

#[test]
#[ignore = "guest test: run by cgroup_v2_root_tests_pass_in_a_pure_v2_guest"]
fn v2_device_filter_allows_exactly_what_a_rule_grants() {
    on_v2();
    let (maj, min) = scratch_disk();
    let out = with_disk(
        "dev-ro",
        json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "b", "major": maj, "minor": min, "access": "r"}
        ]),
        DEVICE_PROBE,
    );
    assert_eq!(
        out,
        vec![
            "null-ok",
            "vda-read",
            "vda-write-denied",
            "mknod-denied",
            "mknod-null-ok"
        ]
    );
}

#[test]
#[ignore = "guest test: run by cgroup_v2_root_tests_pass_in_a_pure_v2_guest"]
fn v2_privileged_container_reaches_every_device() {
    on_v2();
    let out = with_disk(
        "dev-priv",
        json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "access": "rwm"}
        ]),
        DEVICE_PROBE,
    );
    assert_eq!(
        out,
        vec![
            "null-ok",
            "vda-read",
            "vda-write",
            "mknod-ok",
            "mknod-null-ok"
        ]
    );
}

#[test]
#[ignore = "guest test: run by cgroup_v2_root_tests_pass_in_a_pure_v2_guest"]
fn v2_device_rule_update_replaces_the_program_without_stacking() {
    use berth_runtime::sys::bpf::query_cgroup_device;
    use std::os::fd::AsFd;
    on_v2();
    let mut f = Fixture::new("dev-update");
    f.args("exec sleep 1000");
    let c = f.create();
    let dir = std::fs::File::open(Path::new(CG).join(f.cgroup_rel())).unwrap();
    let before = query_cgroup_device(dir.as_fd()).unwrap();
    assert_eq!(before.len(), 1, "one filter after create: {before:?}");
    let (maj, min) = scratch_disk();
    let res: oci_spec::runtime::LinuxResources = serde_json::from_value(json!({
        "devices": [
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "b", "major": maj, "minor": min, "access": "r"}
        ]
    }))
    .unwrap();
    c.update(&res).unwrap();
    let after = query_cgroup_device(dir.as_fd()).unwrap();
    assert_eq!(after.len(), 1, "the old filter is detached: {after:?}");
    assert_ne!(after, before, "a new program replaced the old one");
    // Allowing everything needs no program at all.
    let all: oci_spec::runtime::LinuxResources =
        serde_json::from_value(json!({"devices": [{"allow": true, "access": "rwm"}]})).unwrap();
    c.update(&all).unwrap();
    assert_eq!(query_cgroup_device(dir.as_fd()).unwrap(), Vec::<u32>::new());
    c.delete(true).unwrap();
}

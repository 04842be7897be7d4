//! Shared helpers for the root tests: a busybox rootfs, spec building, running
//! `berth-monitor`, polling, and cleanup.
#![allow(dead_code)]

use berth_runtime::{Container, ContainerState, Status};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const MONITOR: &str = env!("CARGO_BIN_EXE_berth-monitor");

/// Generous: the CI box has two loaded cores.
pub const WAIT: Duration = Duration::from_secs(60);

/// Returns false (and says why) when the test cannot run here.
pub fn can_run() -> bool {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipping: needs root (namespaces, cgroups, mounts)");
        return false;
    }
    if !Path::new("/bin/busybox").exists() {
        eprintln!("skipping: needs /bin/busybox (Debian busybox-static)");
        return false;
    }
    true
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A bundle + state dir for one test container, removed on drop.
pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub id: String,
    pub spec: Value,
}

impl Fixture {
    pub fn new(name: &str) -> Fixture {
        let tmp = tempfile::tempdir().expect("tempdir");
        let id = format!(
            "t{}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst),
            name
        );
        build_rootfs(&tmp.path().join("bundle/rootfs"));
        let spec = base_spec(&id);
        Fixture { tmp, id, spec }
    }

    pub fn bundle(&self) -> PathBuf {
        self.tmp.path().join("bundle")
    }
    pub fn rootfs(&self) -> PathBuf {
        self.bundle().join("rootfs")
    }
    pub fn state_dir(&self) -> PathBuf {
        self.tmp.path().join("state")
    }
    pub fn log_path(&self) -> PathBuf {
        self.tmp.path().join("logs/c.log")
    }
    pub fn cgroup_rel(&self) -> String {
        format!("berth-test/{}", self.id)
    }

    pub fn args(&mut self, script: &str) -> &mut Self {
        self.spec["process"]["args"] = json!(["sh", "-c", script]);
        self
    }

    fn write_spec(&self) {
        std::fs::write(
            self.bundle().join("config.json"),
            serde_json::to_vec_pretty(&self.spec).unwrap(),
        )
        .unwrap();
    }

    /// Runs `berth-monitor create`; returns its output.
    pub fn create_raw(&self, extra: &[&str]) -> Output {
        self.write_spec();
        Command::new(MONITOR)
            .arg("create")
            .args(["--id", &self.id])
            .arg("--bundle")
            .arg(self.bundle())
            .arg("--state-dir")
            .arg(self.state_dir())
            .arg("--log-path")
            .arg(self.log_path())
            .args(extra)
            .output()
            .expect("run berth-monitor")
    }

    /// Creates the container, panicking with the monitor's stderr on failure.
    pub fn create(&self) -> Container {
        let out = self.create_raw(&[]);
        assert!(
            out.status.success(),
            "create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pid: i32 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("pid on stdout");
        let c = Container::load(&self.state_dir()).expect("load");
        assert_eq!(c.pid(), pid);
        c
    }

    /// Creates, starts and waits for the exit; returns the final state.
    pub fn run(&self) -> ContainerState {
        let c = self.create();
        c.start().expect("start");
        wait_stopped(&c)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The content of the log's stdout/stderr records, one per line.
    pub fn log_lines(&self, stream: &str) -> Vec<String> {
        self.log()
            .lines()
            .filter_map(|l| {
                let mut it = l.splitn(4, ' ');
                let _ts = it.next()?;
                (it.next()? == stream).then_some(())?;
                let _tag = it.next()?;
                Some(it.next().unwrap_or("").to_string())
            })
            .collect()
    }

    pub fn cgroup_exists(&self) -> bool {
        ["memory", "pids", "cpu", "unified"].iter().any(|c| {
            Path::new("/sys/fs/cgroup")
                .join(c)
                .join(self.cgroup_rel())
                .exists()
        })
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Ok(c) = Container::load(&self.state_dir()) {
            let _ = c.delete(true);
        }
        for c in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let d = c.path().join("berth-test").join(&self.id);
            let _ = std::fs::remove_dir(&d);
            // Succeeds only for the last test out.
            let _ = std::fs::remove_dir(c.path().join("berth-test"));
        }
    }
}

pub fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn wait_stopped(c: &Container) -> ContainerState {
    let mut last = None;
    wait_for("container to stop", || {
        let s = c.state().expect("state");
        let done = s.status == Status::Stopped;
        last = Some(s);
        done
    });
    last.unwrap()
}

/// A busybox rootfs whose applets are hard links (busybox runs applets in-process).
pub fn build_rootfs(root: &Path) {
    for d in [
        "bin",
        "proc",
        "dev",
        "sys",
        "tmp",
        "etc",
        "root",
        "home/user",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let bb = root.join("bin/busybox");
    std::fs::copy("/bin/busybox", &bb).unwrap();
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" && !applet.is_empty() {
            let _ = std::fs::hard_link(&bb, root.join("bin").join(applet));
        }
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        root.join("etc/group"),
        "root:x:0:\nuser:x:1000:\nextra:x:2000:\n",
    )
    .unwrap();
}

pub fn all_caps() -> Vec<&'static str> {
    vec![
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    ]
}

/// A containerd-like default spec running `true`.
pub fn base_spec(id: &str) -> Value {
    let caps = all_caps();
    json!({
        "ociVersion": "1.0.2",
        "root": {"path": "rootfs"},
        "hostname": "berth-test",
        "process": {
            "args": ["true"],
            "cwd": "/",
            "env": ["PATH=/bin", "HOME=/root"],
            "user": {"uid": 0, "gid": 0},
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": true,
            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 1024}]
        },
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "cgroupsPath": format!("/berth-test/{id}"),
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

//! Container cgroups on v1, v2 and hybrid hosts, by plain cgroupfs writes.
//!
//! Why not `cgroups-rs`: on a hybrid host (v1 controllers plus an empty cgroup2
//! mount at `/sys/fs/cgroup/unified`, as here) it has to be told the layout, it
//! cannot be rooted at a directory other than `/sys/fs/cgroup` (so it cannot be
//! unit-tested against a fake tree), and it pulls in more code than the handful of
//! files a container needs. Each implementation here takes its cgroupfs root as a
//! parameter, so the same code runs against the real kernel and a tempdir fake.
//!
//! Invariants: a container's cgroup is created before its process exists and
//! removed only after it has no tasks; the monitor process itself never joins it.

mod devices;
mod path;
mod v1;
mod v2;
mod warm;

pub use path::parse_cgroups_path;
pub use v1::V1Cgroup;
pub use v2::V2Cgroup;
pub use warm::{own_procs_files, warm_attach_lock};

use crate::error::{Error, Result};
use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Usage numbers read back from a container's cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub cpu_usage_ns: u64,
    pub memory_usage_bytes: u64,
    /// Usage minus inactive file cache, what kubelet evicts on.
    pub memory_working_set_bytes: u64,
    pub pids: u64,
    pub oom_events: u64,
    /// Page faults (minor and major) and major ones alone, from memory.stat.
    #[serde(default)]
    pub page_faults: u64,
    #[serde(default)]
    pub major_page_faults: u64,
}

/// One container's cgroup, whatever the host's hierarchy looks like.
pub trait CgroupManager: std::fmt::Debug {
    /// Creates the cgroup directories (idempotent).
    fn create(&self) -> Result<()>;
    /// Writes resource limits.
    fn apply(&self, res: &LinuxResources) -> Result<()>;
    /// Moves a process into the cgroup.
    fn add_pid(&self, pid: i32) -> Result<()>;
    /// Pids currently in the cgroup.
    fn pids(&self) -> Result<Vec<i32>>;
    /// Usage statistics.
    fn stats(&self) -> Result<Stats>;
    /// The file whose `oom_kill N` line counts the OOM killer's kills in this
    /// cgroup (v1 memory.oom_control, v2 memory.events); `None` without a
    /// memory controller. berth-monitor-serve reads it when the init exits.
    fn oom_kills_file(&self) -> Option<PathBuf>;
    /// How many processes the OOM killer has killed in this cgroup.
    fn oom_kills(&self) -> Result<u64> {
        match self.oom_kills_file() {
            Some(f) if f.exists() => Ok(read_keyed(&f, "oom_kill")?.unwrap_or(0)),
            _ => Ok(0),
        }
    }
    /// Sends `signal` to every process in the cgroup. SIGKILL on v2 goes
    /// through `cgroup.kill`, which the kernel applies atomically, so a process
    /// forking meanwhile cannot leave a child behind.
    fn kill_all(&self, signal: i32) -> Result<()> {
        for pid in self.pids()? {
            let _ = crate::sys::process::kill(pid, signal);
        }
        Ok(())
    }
    /// Removes the cgroup directories (idempotent; fails while tasks remain).
    fn remove(&self) -> Result<()>;
    /// The directory to write to `cgroup.procs` of, for `exec` (one per hierarchy).
    fn procs_files(&self) -> Vec<PathBuf>;
}

/// Which cgroup hierarchy a host uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    V1,
    V2,
    Hybrid,
}

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// Detects the layout of a cgroupfs mounted at `root` (normally `/sys/fs/cgroup`).
pub fn detect_layout(root: &Path) -> Result<Layout> {
    let magic = |p: &Path| {
        nix::sys::statfs::statfs(p)
            .map(|s| s.filesystem_type().0)
            .ok()
    };
    if magic(root) == Some(CGROUP2_SUPER_MAGIC) {
        return Ok(Layout::V2);
    }
    if !root.join("memory").exists() && !root.join("cpu").exists() {
        if root.join("cgroup.controllers").exists() {
            return Ok(Layout::V2);
        }
        return Err(Error::Cgroup {
            path: root.into(),
            msg: "no cgroup hierarchy found".into(),
        });
    }
    if magic(&root.join("unified")) == Some(CGROUP2_SUPER_MAGIC) {
        Ok(Layout::Hybrid)
    } else {
        Ok(Layout::V1)
    }
}

/// Whether the manager for `layout` can set hugepage limits: a v1 `hugetlb`
/// hierarchy (v1 and hybrid: the manager writes only v1 files), or `hugetlb`
/// among a v2 root's controllers. On a hybrid host whose cgroup2 mount holds
/// hugetlb this is false: the limits would need the controller enabled down
/// a second tree that the kubelet's cgroup parents do not manage.
pub fn hugetlb_available(layout: Layout, root: &Path) -> bool {
    match layout {
        Layout::V1 | Layout::Hybrid => root.join("hugetlb").is_dir(),
        Layout::V2 => std::fs::read_to_string(root.join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "hugetlb")),
    }
}

/// Opens the manager for cgroup `rel` (relative to each hierarchy root).
pub fn manager(layout: Layout, root: &Path, rel: &Path) -> Box<dyn CgroupManager> {
    match layout {
        Layout::V1 => Box::new(V1Cgroup::new(root, rel, false)),
        Layout::Hybrid => Box::new(V1Cgroup::new(root, rel, true)),
        Layout::V2 => Box::new(V2Cgroup::new(root, rel)),
    }
}

pub(crate) fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(|e| Error::Cgroup {
        path: path.into(),
        msg: format!("write {value:?}: {e}"),
    })
}

pub(crate) fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::Cgroup {
        path: path.into(),
        msg: format!("read: {e}"),
    })
}

pub(crate) fn read_u64(path: &Path) -> Result<u64> {
    let s = read(path)?;
    let s = s.trim();
    if s == "max" {
        return Ok(u64::MAX);
    }
    s.parse().map_err(|_| Error::Cgroup {
        path: path.into(),
        msg: format!("not a number: {s:?}"),
    })
}

/// Reads `key value` lines (memory.stat, memory.events, cpu.stat).
pub(crate) fn read_keyed(path: &Path, key: &str) -> Result<Option<u64>> {
    let text = read(path)?;
    Ok(text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(key))
            .then(|| it.next()?.parse().ok())
            .flatten()
    }))
}

pub(crate) fn read_pids(path: &Path) -> Result<Vec<i32>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s.lines().filter_map(|l| l.trim().parse().ok()).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::Cgroup {
            path: path.into(),
            msg: format!("read: {e}"),
        }),
    }
}

/// Removes a cgroup directory, retrying briefly while the kernel finishes
/// tearing down exited tasks (rmdir returns EBUSY for a short while).
pub(crate) fn rmdir(path: &Path) -> Result<()> {
    for i in 0..100 {
        match std::fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && i < 99 => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => {
                return Err(Error::Cgroup {
                    path: path.into(),
                    msg: format!("rmdir: {e}"),
                })
            }
        }
    }
    Ok(())
}

/// Converts cgroup v1 cpu shares to a v2 cpu weight (the mapping runc and the
/// kubelet agree on).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// Converts a v1 blkio weight (10..1000) to a v2 io weight (1..10000).
pub fn blkio_to_io_weight(w: u16) -> u64 {
    let w = (w as u64).clamp(10, 1000);
    1 + ((w - 10) * 9999) / 990
}

/// Device-cgroup allows every container gets after a deny-all (the devices the
/// runtime itself creates under /dev), as `devices.allow` lines.
pub(crate) fn default_device_rules() -> Vec<String> {
    [
        "c 1:3 rwm",   // null
        "c 1:5 rwm",   // zero
        "c 1:7 rwm",   // full
        "c 1:8 rwm",   // random
        "c 1:9 rwm",   // urandom
        "c 5:0 rwm",   // tty
        "c 5:2 rwm",   // ptmx
        "c 136:* rwm", // pts
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_shares_and_weights() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(1000), 10_000);
    }

    #[test]
    fn detects_fake_v1_tree() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("memory")).unwrap();
        assert_eq!(detect_layout(d.path()).unwrap(), Layout::V1);
    }

    #[test]
    fn detects_this_hosts_cgroup_layout() {
        if !Path::new("/sys/fs/cgroup").exists() {
            return;
        }
        let l = detect_layout(Path::new("/sys/fs/cgroup")).unwrap();
        if Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists()
            && Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists()
        {
            assert_eq!(l, Layout::Hybrid);
        }
    }

    #[test]
    fn hugetlb_is_available_only_where_the_manager_writes_it() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("memory")).unwrap();
        // Hybrid with hugetlb only in the cgroup2 tree: the v1 manager cannot use it.
        std::fs::create_dir(d.path().join("unified")).unwrap();
        std::fs::write(d.path().join("unified/cgroup.controllers"), "hugetlb\n").unwrap();
        assert!(!hugetlb_available(Layout::Hybrid, d.path()));
        assert!(!hugetlb_available(Layout::V1, d.path()));
        std::fs::create_dir(d.path().join("hugetlb")).unwrap();
        assert!(hugetlb_available(Layout::Hybrid, d.path()));

        let v2 = tempfile::tempdir().unwrap();
        std::fs::write(v2.path().join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        assert!(!hugetlb_available(Layout::V2, v2.path()));
        std::fs::write(v2.path().join("cgroup.controllers"), "cpu hugetlb\n").unwrap();
        assert!(hugetlb_available(Layout::V2, v2.path()));
    }
}

//! cgroup v2 (unified hierarchy).

use super::{
    blkio_to_io_weight, read_keyed, read_pids, read_u64, rmdir, shares_to_weight, write,
    CgroupManager, Stats,
};
use crate::error::{Error, Result};
use oci_spec::runtime::LinuxResources;
use std::path::{Path, PathBuf};

/// A container cgroup on a unified host.
#[derive(Debug)]
pub struct V2Cgroup {
    root: PathBuf,
    dir: PathBuf,
    rel: PathBuf,
}

impl V2Cgroup {
    /// `root` is the cgroup2 mount point.
    pub fn new(root: &Path, rel: &Path) -> Self {
        Self {
            root: root.into(),
            dir: root.join(rel),
            rel: rel.into(),
        }
    }

    // Controllers must be enabled in every ancestor's subtree_control for the
    // interface files to appear in the leaf.
    fn enable_controllers(&self) -> Result<()> {
        let avail =
            std::fs::read_to_string(self.root.join("cgroup.controllers")).unwrap_or_default();
        let wanted: Vec<&str> = avail
            .split_whitespace()
            .filter(|c| ["cpu", "cpuset", "memory", "io", "pids", "hugetlb"].contains(c))
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let line = wanted
            .iter()
            .map(|c| format!("+{c}"))
            .collect::<Vec<_>>()
            .join(" ");
        let comps: Vec<_> = self.rel.components().collect();
        let mut cur = self.root.clone();
        write(&cur.join("cgroup.subtree_control"), &line)?;
        for comp in &comps[..comps.len().saturating_sub(1)] {
            cur = cur.join(comp);
            write(&cur.join("cgroup.subtree_control"), &line)?;
        }
        Ok(())
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn max_or(v: i64) -> String {
    if v < 0 {
        "max".into()
    } else {
        v.to_string()
    }
}

impl CgroupManager for V2Cgroup {
    fn create(&self) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::Cgroup {
            path: self.dir.clone(),
            msg: format!("mkdir: {e}"),
        })?;
        self.enable_controllers()
    }

    fn apply(&self, res: &LinuxResources) -> Result<()> {
        if let Some(mem) = res.memory() {
            if let Some(r) = mem.reservation() {
                write(&self.file("memory.low"), &max_or(r))?;
            }
            if let Some(l) = mem.limit() {
                write(&self.file("memory.max"), &max_or(l))?;
            }
            // OCI swap is memory+swap; v2 wants the swap part alone.
            if let Some(s) = mem.swap() {
                let v = match (s, mem.limit()) {
                    (s, _) if s < 0 => "max".to_string(),
                    (s, Some(l)) if l >= 0 => {
                        if s < l {
                            return Err(Error::spec(
                                "linux.resources.memory.swap",
                                "memory+swap limit is below the memory limit",
                            ));
                        }
                        (s - l).to_string()
                    }
                    (_, _) => {
                        return Err(Error::spec(
                            "linux.resources.memory.swap",
                            "a swap limit needs a memory limit on cgroup v2",
                        ))
                    }
                };
                write(&self.file("memory.swap.max"), &v)?;
            }
            if mem.disable_oom_killer() == Some(true) {
                return Err(Error::Unsupported {
                    field: "linux.resources.memory.disableOOMKiller".into(),
                    msg: "cgroup v2 cannot disable the oom killer".into(),
                });
            }
        }
        if let Some(cpu) = res.cpu() {
            if let Some(s) = cpu.shares() {
                write(&self.file("cpu.weight"), &shares_to_weight(s).to_string())?;
            }
            if cpu.quota().is_some() || cpu.period().is_some() {
                let period = cpu.period().unwrap_or(100_000);
                let quota = match cpu.quota() {
                    Some(q) if q > 0 => q.to_string(),
                    _ => "max".into(),
                };
                write(&self.file("cpu.max"), &format!("{quota} {period}"))?;
            }
            if let Some(c) = cpu.cpus().as_deref().filter(|c| !c.is_empty()) {
                write(&self.file("cpuset.cpus"), c)?;
            }
            if let Some(m) = cpu.mems().as_deref().filter(|m| !m.is_empty()) {
                write(&self.file("cpuset.mems"), m)?;
            }
        }
        if let Some(p) = res.pids() {
            let v = if p.limit() > 0 {
                p.limit().to_string()
            } else {
                "max".into()
            };
            write(&self.file("pids.max"), &v)?;
        }
        if let Some(b) = res.block_io() {
            if let Some(w) = b.weight() {
                write(
                    &self.file("io.weight"),
                    &format!("default {}", blkio_to_io_weight(w)),
                )?;
            }
            let throttles = [
                ("rbps", b.throttle_read_bps_device()),
                ("wbps", b.throttle_write_bps_device()),
                ("riops", b.throttle_read_iops_device()),
                ("wiops", b.throttle_write_iops_device()),
            ];
            for (key, list) in throttles {
                for t in list.iter().flatten() {
                    write(
                        &self.file("io.max"),
                        &format!("{}:{} {key}={}", t.major(), t.minor(), t.rate()),
                    )?;
                }
            }
        }
        for h in res.hugepage_limits().iter().flatten() {
            write(
                &self.file(&format!("hugetlb.{}.max", h.page_size())),
                &h.limit().to_string(),
            )?;
        }
        // An empty list changes nothing (as on v1), rather than denying all.
        if let Some(rules) = res.devices().as_ref().filter(|r| !r.is_empty()) {
            super::devices::apply(&self.dir, rules)?;
        }
        for (k, v) in res.unified().iter().flatten() {
            if k.contains('/') || k.starts_with('.') {
                return Err(Error::spec(
                    format!("linux.resources.unified.{k}"),
                    "not a cgroup file name",
                ));
            }
            write(&self.file(k), v)?;
        }
        Ok(())
    }

    fn add_pid(&self, pid: i32) -> Result<()> {
        write(&self.file("cgroup.procs"), &pid.to_string())
    }

    fn pids(&self) -> Result<Vec<i32>> {
        read_pids(&self.file("cgroup.procs"))
    }

    fn stats(&self) -> Result<Stats> {
        let mut s = Stats::default();
        if self.file("cpu.stat").exists() {
            s.cpu_usage_ns = read_keyed(&self.file("cpu.stat"), "usage_usec")?.unwrap_or(0) * 1000;
        }
        if self.file("memory.current").exists() {
            s.memory_usage_bytes = read_u64(&self.file("memory.current"))?;
            let inactive = read_keyed(&self.file("memory.stat"), "inactive_file")?.unwrap_or(0);
            s.memory_working_set_bytes = s.memory_usage_bytes.saturating_sub(inactive);
            s.page_faults = read_keyed(&self.file("memory.stat"), "pgfault")?.unwrap_or(0);
            s.major_page_faults = read_keyed(&self.file("memory.stat"), "pgmajfault")?.unwrap_or(0);
        }
        if self.file("pids.current").exists() {
            s.pids = read_u64(&self.file("pids.current"))?;
        }
        s.oom_events = self.oom_kills()?;
        Ok(s)
    }

    fn kill_all(&self, signal: i32) -> Result<()> {
        // cgroup.kill exists since Linux 5.14; older kernels get the pid loop.
        let kill = self.file("cgroup.kill");
        if signal == libc::SIGKILL && kill.exists() {
            return write(&kill, "1");
        }
        for pid in self.pids()? {
            let _ = crate::sys::process::kill(pid, signal);
        }
        Ok(())
    }

    fn oom_kills_file(&self) -> Option<PathBuf> {
        Some(self.file("memory.events"))
    }

    fn remove(&self) -> Result<()> {
        rmdir(&self.dir)
    }

    fn procs_files(&self) -> Vec<PathBuf> {
        vec![self.file("cgroup.procs")]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{
        LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder,
        LinuxResourcesBuilder,
    };

    #[test]
    fn translates_resources_to_unified_files() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(
            root.path().join("cgroup.controllers"),
            "cpu io memory pids\n",
        )
        .unwrap();
        let cg = V2Cgroup::new(root.path(), Path::new("kubepods/pod1/c1"));
        cg.create().unwrap();
        let rd = |p: &str| std::fs::read_to_string(root.path().join(p)).unwrap();
        assert_eq!(rd("cgroup.subtree_control"), "+cpu +io +memory +pids");
        assert_eq!(
            rd("kubepods/pod1/cgroup.subtree_control"),
            "+cpu +io +memory +pids"
        );
        assert!(!root
            .path()
            .join("kubepods/pod1/c1/cgroup.subtree_control")
            .exists());
        let res = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(100i64 << 20)
                    .swap(150i64 << 20)
                    .build()
                    .unwrap(),
            )
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(1024u64)
                    .quota(20_000i64)
                    .period(100_000u64)
                    .cpus("0")
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(42).build().unwrap())
            .block_io(
                LinuxBlockIoBuilder::default()
                    .weight(500u16)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        cg.apply(&res).unwrap();
        let c = "kubepods/pod1/c1/";
        assert_eq!(rd(&format!("{c}memory.max")), "104857600");
        assert_eq!(rd(&format!("{c}memory.swap.max")), "52428800");
        assert_eq!(rd(&format!("{c}cpu.weight")), "39");
        assert_eq!(rd(&format!("{c}cpu.max")), "20000 100000");
        assert_eq!(rd(&format!("{c}cpuset.cpus")), "0");
        assert_eq!(rd(&format!("{c}pids.max")), "42");
        assert_eq!(rd(&format!("{c}io.weight")), "default 4950");
    }

    #[test]
    fn unlimited_values_become_max() {
        let root = tempfile::tempdir().unwrap();
        let cg = V2Cgroup::new(root.path(), Path::new("c"));
        cg.create().unwrap();
        let res = LinuxResourcesBuilder::default()
            .memory(LinuxMemoryBuilder::default().limit(-1i64).build().unwrap())
            .cpu(LinuxCpuBuilder::default().quota(-1i64).build().unwrap())
            .pids(LinuxPidsBuilder::default().limit(-1).build().unwrap())
            .build()
            .unwrap();
        cg.apply(&res).unwrap();
        let rd = |p: &str| std::fs::read_to_string(root.path().join("c").join(p)).unwrap();
        assert_eq!(rd("memory.max"), "max");
        assert_eq!(rd("cpu.max"), "max 100000");
        assert_eq!(rd("pids.max"), "max");
    }

    #[test]
    fn reads_stats_and_oom_kills() {
        let root = tempfile::tempdir().unwrap();
        let cg = V2Cgroup::new(root.path(), Path::new("c"));
        cg.create().unwrap();
        let w = |p: &str, v: &str| std::fs::write(root.path().join("c").join(p), v).unwrap();
        w("cpu.stat", "usage_usec 7\nuser_usec 5\n");
        w("memory.current", "4096\n");
        w("memory.stat", "anon 1\ninactive_file 1024\n");
        w("memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n");
        w("pids.current", "2\n");
        let s = cg.stats().unwrap();
        assert_eq!(s.cpu_usage_ns, 7000);
        assert_eq!(s.memory_working_set_bytes, 3072);
        assert_eq!(s.oom_events, 1);
        assert_eq!(s.pids, 2);
    }
}

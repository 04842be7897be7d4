//! cgroup v1 (and hybrid: v1 controllers plus a process-tracking cgroup2 tree).

use super::{read_keyed, read_pids, read_u64, rmdir, write, CgroupManager, Stats};
use crate::error::{Error, Result};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxResources};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const CONTROLLERS: [&str; 13] = [
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "blkio",
    "pids",
    "hugetlb",
    "perf_event",
    "net_cls",
    "net_prio",
    "systemd",
];

/// A container cgroup on a v1 or hybrid host.
#[derive(Debug)]
pub struct V1Cgroup {
    root: PathBuf,
    rel: PathBuf,
    hybrid: bool,
    /// [`V1Cgroup::dirs`], worked out once: it costs a stat and a
    /// canonicalize per controller, and create, add_pid and remove all need it.
    dirs: OnceLock<Vec<PathBuf>>,
}

impl V1Cgroup {
    /// `root` is the tmpfs holding one directory per controller.
    pub fn new(root: &Path, rel: &Path, hybrid: bool) -> Self {
        Self {
            root: root.into(),
            rel: rel.into(),
            hybrid,
            dirs: OnceLock::new(),
        }
    }

    fn dir(&self, controller: &str) -> Option<PathBuf> {
        let base = self.root.join(controller);
        base.is_dir().then(|| base.join(&self.rel))
    }

    fn need(&self, controller: &str, field: &str) -> Result<PathBuf> {
        self.dir(controller).ok_or_else(|| Error::Unsupported {
            field: field.into(),
            msg: format!("the {controller} cgroup controller is not mounted"),
        })
    }

    /// Every distinct hierarchy directory (cpu and cpuacct may be one mount).
    fn dirs(&self) -> &[PathBuf] {
        self.dirs.get_or_init(|| self.find_dirs())
    }

    fn find_dirs(&self) -> Vec<PathBuf> {
        let mut seen: Vec<PathBuf> = Vec::new();
        let mut out = Vec::new();
        for c in CONTROLLERS {
            let base = self.root.join(c);
            if !base.is_dir() {
                continue;
            }
            let canon = base.canonicalize().unwrap_or(base.clone());
            if seen.contains(&canon) {
                continue;
            }
            seen.push(canon);
            out.push(base.join(&self.rel));
        }
        if self.hybrid {
            out.push(self.root.join("unified").join(&self.rel));
        }
        out
    }

    // A new cpuset cgroup starts with empty cpus/mems and refuses tasks until
    // they are filled in, so copy them down from the nearest ancestor.
    fn init_cpuset(&self) -> Result<()> {
        let Some(base) = self.dir("cpuset").map(|_| self.root.join("cpuset")) else {
            return Ok(());
        };
        let mut cur = base.clone();
        for comp in self.rel.components() {
            let parent = cur.clone();
            cur = cur.join(comp);
            for f in ["cpuset.cpus", "cpuset.mems"] {
                let mine = std::fs::read_to_string(cur.join(f)).unwrap_or_default();
                if mine.trim().is_empty() {
                    let theirs = std::fs::read_to_string(parent.join(f)).unwrap_or_default();
                    if !theirs.trim().is_empty() {
                        write(&cur.join(f), theirs.trim())?;
                    }
                }
            }
        }
        Ok(())
    }

    fn apply_devices(&self, rules: &[LinuxDeviceCgroup]) -> Result<()> {
        let Some(dir) = self.dir("devices") else {
            return Err(Error::Unsupported {
                field: "linux.resources.devices".into(),
                msg: "the devices cgroup controller is not mounted".into(),
            });
        };
        // One open per file: the kernel takes each write(2) as one rule, and
        // a container from a CRI spec has a dozen or more of them.
        let mut allow = RuleFile::new(dir.join("devices.allow"));
        let mut deny = RuleFile::new(dir.join("devices.deny"));
        for r in rules {
            let f = if r.allow() { &mut allow } else { &mut deny };
            f.write(&device_rule(r))?;
        }
        if rules.iter().any(|r| !r.allow()) {
            for r in super::default_device_rules() {
                allow.write(&r)?;
            }
        }
        Ok(())
    }
}

/// A cgroup file taking one value per write(2), opened on first use.
struct RuleFile {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl RuleFile {
    fn new(path: PathBuf) -> Self {
        Self { path, file: None }
    }

    fn write(&mut self, value: &str) -> Result<()> {
        use std::io::Write;
        let err = |e: std::io::Error| Error::Cgroup {
            path: self.path.clone(),
            msg: format!("write {value:?}: {e}"),
        };
        let f = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&self.path)
                    .map_err(err)?,
            ),
        };
        // One write call: a rule split over two writes would be two bad rules.
        match f.write(value.as_bytes()) {
            Ok(n) if n == value.len() => Ok(()),
            Ok(_) => Err(err(std::io::Error::from(std::io::ErrorKind::WriteZero))),
            Err(e) => Err(err(e)),
        }
    }
}

/// Formats a rule the way devices.allow/deny and the v2 tests expect: `c 1:3 rwm`.
pub(crate) fn device_rule(r: &LinuxDeviceCgroup) -> String {
    let typ = match r.typ() {
        Some(t) if t.as_str() == "u" => "c".to_string(),
        Some(t) => t.as_str().to_string(),
        None => "a".to_string(),
    };
    if typ == "a" && r.major().is_none() && r.minor().is_none() {
        return "a".to_string();
    }
    let n = |v: Option<i64>| match v {
        Some(v) if v >= 0 => v.to_string(),
        _ => "*".into(),
    };
    let access = r.access().clone().unwrap_or_else(|| "rwm".into());
    format!("{typ} {}:{} {access}", n(r.major()), n(r.minor()))
}

fn limit_str(v: i64) -> String {
    if v < 0 {
        "-1".into()
    } else {
        v.to_string()
    }
}

impl CgroupManager for V1Cgroup {
    fn create(&self) -> Result<()> {
        for d in self.dirs() {
            std::fs::create_dir_all(d).map_err(|e| Error::Cgroup {
                path: d.clone(),
                msg: format!("mkdir: {e}"),
            })?;
        }
        self.init_cpuset()
    }

    fn apply(&self, res: &LinuxResources) -> Result<()> {
        if let Some(mem) = res.memory() {
            let dir = self.need("memory", "linux.resources.memory")?;
            if let Some(r) = mem.reservation() {
                write(&dir.join("memory.soft_limit_in_bytes"), &limit_str(r))?;
            }
            let memsw = dir.join("memory.memsw.limit_in_bytes");
            match (mem.limit(), mem.swap()) {
                (Some(l), Some(s)) if memsw.exists() => {
                    // memsw must stay >= limit at every step: raise memsw first when
                    // growing, lower the limit first when shrinking.
                    let cur = read_u64(&memsw).unwrap_or(u64::MAX);
                    if u64::try_from(s).map_or(true, |s| s >= cur) {
                        write(&memsw, &limit_str(s))?;
                        write(&dir.join("memory.limit_in_bytes"), &limit_str(l))?;
                    } else {
                        write(&dir.join("memory.limit_in_bytes"), &limit_str(l))?;
                        write(&memsw, &limit_str(s))?;
                    }
                }
                (l, s) => {
                    if let Some(l) = l {
                        write(&dir.join("memory.limit_in_bytes"), &limit_str(l))?;
                    }
                    if let Some(s) = s {
                        if memsw.exists() {
                            write(&memsw, &limit_str(s))?;
                        } else if Some(s) != l && s != 0 {
                            return Err(Error::Unsupported {
                                field: "linux.resources.memory.swap".into(),
                                msg: "swap accounting is disabled on this host".into(),
                            });
                        }
                    }
                }
            }
            if let Some(sw) = mem.swappiness() {
                write(&dir.join("memory.swappiness"), &sw.to_string())?;
            }
            if mem.disable_oom_killer() == Some(true) {
                write(&dir.join("memory.oom_control"), "1")?;
            }
        }
        if let Some(cpu) = res.cpu() {
            if cpu.shares().is_some()
                || cpu.quota().is_some()
                || cpu.period().is_some()
                || cpu.realtime_runtime().is_some()
            {
                let dir = self.need("cpu", "linux.resources.cpu")?;
                if let Some(s) = cpu.shares() {
                    write(&dir.join("cpu.shares"), &s.to_string())?;
                }
                if let Some(p) = cpu.period() {
                    write(&dir.join("cpu.cfs_period_us"), &p.to_string())?;
                }
                if let Some(q) = cpu.quota() {
                    write(&dir.join("cpu.cfs_quota_us"), &limit_str(q))?;
                }
                if let Some(p) = cpu.realtime_period() {
                    write(&dir.join("cpu.rt_period_us"), &p.to_string())?;
                }
                if let Some(r) = cpu.realtime_runtime() {
                    write(&dir.join("cpu.rt_runtime_us"), &r.to_string())?;
                }
            }
            if cpu.cpus().is_some() || cpu.mems().is_some() {
                let dir = self.need("cpuset", "linux.resources.cpu.cpus")?;
                if let Some(c) = cpu.cpus().as_deref().filter(|c| !c.is_empty()) {
                    write(&dir.join("cpuset.cpus"), c)?;
                }
                if let Some(m) = cpu.mems().as_deref().filter(|m| !m.is_empty()) {
                    write(&dir.join("cpuset.mems"), m)?;
                }
            }
        }
        if let Some(p) = res.pids() {
            let dir = self.need("pids", "linux.resources.pids")?;
            let v = if p.limit() > 0 {
                p.limit().to_string()
            } else {
                "max".into()
            };
            write(&dir.join("pids.max"), &v)?;
        }
        if let Some(b) = res.block_io() {
            let dir = self.need("blkio", "linux.resources.blockIO")?;
            if let Some(w) = b.weight() {
                let f = ["blkio.weight", "blkio.bfq.weight"]
                    .iter()
                    .map(|f| dir.join(f))
                    .find(|p| p.exists())
                    .ok_or_else(|| Error::Unsupported {
                        field: "linux.resources.blockIO.weight".into(),
                        msg: "no blkio weight file (cfq/bfq scheduler not in use)".into(),
                    })?;
                write(&f, &w.to_string())?;
            }
            let throttles = [
                (
                    "blkio.throttle.read_bps_device",
                    b.throttle_read_bps_device(),
                ),
                (
                    "blkio.throttle.write_bps_device",
                    b.throttle_write_bps_device(),
                ),
                (
                    "blkio.throttle.read_iops_device",
                    b.throttle_read_iops_device(),
                ),
                (
                    "blkio.throttle.write_iops_device",
                    b.throttle_write_iops_device(),
                ),
            ];
            for (file, list) in throttles {
                for t in list.iter().flatten() {
                    write(
                        &dir.join(file),
                        &format!("{}:{} {}", t.major(), t.minor(), t.rate()),
                    )?;
                }
            }
        }
        for (i, h) in res.hugepage_limits().iter().flatten().enumerate() {
            let dir = self.need("hugetlb", &format!("linux.resources.hugepageLimits[{i}]"))?;
            write(
                &dir.join(format!("hugetlb.{}.limit_in_bytes", h.page_size())),
                &h.limit().to_string(),
            )?;
        }
        if let Some(rules) = res.devices() {
            if !rules.is_empty() {
                self.apply_devices(rules)?;
            }
        }
        if res.unified().as_ref().is_some_and(|u| !u.is_empty()) {
            return Err(Error::Unsupported {
                field: "linux.resources.unified".into(),
                msg: "cgroup v2 keys on a v1 host".into(),
            });
        }
        Ok(())
    }

    fn add_pid(&self, pid: i32) -> Result<()> {
        for d in self.dirs() {
            write(&d.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    fn pids(&self) -> Result<Vec<i32>> {
        let dir = self
            .dir("pids")
            .or_else(|| self.dir("memory"))
            .or_else(|| self.dirs().first().cloned())
            .unwrap_or_default();
        read_pids(&dir.join("cgroup.procs"))
    }

    fn stats(&self) -> Result<Stats> {
        let mut s = Stats::default();
        if let Some(d) = self.dir("cpuacct") {
            s.cpu_usage_ns = read_u64(&d.join("cpuacct.usage"))?;
        }
        if let Some(d) = self.dir("memory") {
            s.memory_usage_bytes = read_u64(&d.join("memory.usage_in_bytes"))?;
            let inactive = read_keyed(&d.join("memory.stat"), "total_inactive_file")?.unwrap_or(0);
            s.memory_working_set_bytes = s.memory_usage_bytes.saturating_sub(inactive);
            // total_*: this cgroup and its children, as the usage above.
            s.page_faults = read_keyed(&d.join("memory.stat"), "total_pgfault")?.unwrap_or(0);
            s.major_page_faults =
                read_keyed(&d.join("memory.stat"), "total_pgmajfault")?.unwrap_or(0);
            s.oom_events = self.oom_kills()?;
        }
        if let Some(d) = self.dir("pids") {
            s.pids = read_u64(&d.join("pids.current"))?;
        }
        Ok(s)
    }

    fn oom_kills_file(&self) -> Option<PathBuf> {
        self.dir("memory").map(|d| d.join("memory.oom_control"))
    }

    fn remove(&self) -> Result<()> {
        let mut first_err = None;
        for d in self.dirs() {
            if let Err(e) = rmdir(d) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs().iter().map(|d| d.join("cgroup.procs")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{
        LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemoryBuilder,
        LinuxPidsBuilder, LinuxResourcesBuilder,
    };

    fn fake_root() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for c in ["cpu", "cpuacct", "cpuset", "memory", "pids", "devices"] {
            std::fs::create_dir(d.path().join(c)).unwrap();
        }
        std::fs::write(d.path().join("cpuset/cpuset.cpus"), "0-1\n").unwrap();
        std::fs::write(d.path().join("cpuset/cpuset.mems"), "0\n").unwrap();
        d
    }

    #[test]
    fn writes_limits_to_each_controller() {
        let root = fake_root();
        let cg = V1Cgroup::new(root.path(), Path::new("kubepods/pod1/c1"), false);
        cg.create().unwrap();
        assert_eq!(
            std::fs::read_to_string(root.path().join("cpuset/kubepods/pod1/c1/cpuset.cpus"))
                .unwrap(),
            "0-1"
        );
        let res = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(64 << 20)
                    .build()
                    .unwrap(),
            )
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(512u64)
                    .quota(50_000i64)
                    .period(100_000u64)
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(0).build().unwrap())
            .devices(vec![
                LinuxDeviceCgroupBuilder::default()
                    .allow(false)
                    .access("rwm")
                    .build()
                    .unwrap(),
                LinuxDeviceCgroupBuilder::default()
                    .allow(true)
                    .typ(LinuxDeviceType::C)
                    .major(10i64)
                    .minor(200i64)
                    .access("rwm")
                    .build()
                    .unwrap(),
            ])
            .build()
            .unwrap();
        cg.apply(&res).unwrap();
        let rd = |p: &str| std::fs::read_to_string(root.path().join(p)).unwrap();
        assert_eq!(
            rd("memory/kubepods/pod1/c1/memory.limit_in_bytes"),
            "67108864"
        );
        assert_eq!(rd("cpu/kubepods/pod1/c1/cpu.shares"), "512");
        assert_eq!(rd("cpu/kubepods/pod1/c1/cpu.cfs_quota_us"), "50000");
        assert_eq!(rd("cpu/kubepods/pod1/c1/cpu.cfs_period_us"), "100000");
        assert_eq!(rd("pids/kubepods/pod1/c1/pids.max"), "max");
        assert_eq!(rd("devices/kubepods/pod1/c1/devices.deny"), "a");
        // A plain file keeps only the last write: the default device allows follow.
        assert!(rd("devices/kubepods/pod1/c1/devices.allow").starts_with("c "));
    }

    #[test]
    fn missing_controller_is_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("memory")).unwrap();
        let cg = V1Cgroup::new(d.path(), Path::new("x"), false);
        let res = LinuxResourcesBuilder::default()
            .pids(LinuxPidsBuilder::default().limit(10).build().unwrap())
            .build()
            .unwrap();
        let e = cg.apply(&res).unwrap_err().to_string();
        assert_eq!(
            e,
            "linux.resources.pids: the pids cgroup controller is not mounted"
        );
    }

    #[test]
    fn reads_stats_from_fake_files() {
        let root = fake_root();
        let cg = V1Cgroup::new(root.path(), Path::new("c"), false);
        cg.create().unwrap();
        let w = |p: &str, v: &str| std::fs::write(root.path().join(p), v).unwrap();
        w("cpuacct/c/cpuacct.usage", "12345\n");
        w("memory/c/memory.usage_in_bytes", "1000\n");
        w(
            "memory/c/memory.stat",
            "cache 5\ntotal_inactive_file 300\ntotal_pgfault 40\ntotal_pgmajfault 2\n",
        );
        w(
            "memory/c/memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        );
        w("pids/c/pids.current", "3\n");
        let s = cg.stats().unwrap();
        assert_eq!(
            s,
            Stats {
                cpu_usage_ns: 12345,
                memory_usage_bytes: 1000,
                memory_working_set_bytes: 700,
                pids: 3,
                oom_events: 2,
                page_faults: 40,
                major_page_faults: 2,
            }
        );
    }
}

//! CRI `LinuxContainerResources` → OCI `linux.resources` and
//! `process.oomScoreAdj`.

use std::path::Path;

use berth_proto::v1::LinuxContainerResources;
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxHugepageLimitBuilder, LinuxMemoryBuilder, LinuxResources,
};

use super::empty_resources;
use crate::error::{Error, Result};

fn build(what: &str) -> impl FnOnce(oci_spec::OciSpecError) -> Error + '_ {
    move |e| Error::Internal(format!("build oci {what}: {e}"))
}

fn non_negative(v: i64, field: &str) -> Result<i64> {
    if v < 0 {
        return Err(Error::InvalidArgument(format!(
            "linux.resources.{field}: {v} is negative"
        )));
    }
    Ok(v)
}

/// Whether this host's cgroup hierarchy has a hugetlb controller the runtime
/// writes hugepage limits to (worked out once: the mounts do not change under
/// a running daemon).
pub fn host_has_hugetlb() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        let root = Path::new("/sys/fs/cgroup");
        berth_runtime::cgroups::detect_layout(root)
            .is_ok_and(|l| berth_runtime::cgroups::hugetlb_available(l, root))
    })
}

/// The cgroup limits of a container; zero / empty CRI fields mean unset.
pub fn linux_resources(r: Option<&LinuxContainerResources>) -> Result<LinuxResources> {
    let mut out = empty_resources()?;
    let Some(r) = r else {
        return Ok(out);
    };

    let shares = non_negative(r.cpu_shares, "cpu_shares")?;
    let period = non_negative(r.cpu_period, "cpu_period")?;
    // A quota of -1 means unlimited in cgroup v1; anything else below zero is junk.
    if r.cpu_quota < -1 {
        return Err(Error::InvalidArgument(format!(
            "linux.resources.cpu_quota: {} is negative",
            r.cpu_quota
        )));
    }
    if shares != 0
        || period != 0
        || r.cpu_quota != 0
        || !r.cpuset_cpus.is_empty()
        || !r.cpuset_mems.is_empty()
    {
        let mut cpu = LinuxCpuBuilder::default();
        if shares != 0 {
            cpu = cpu.shares(shares.unsigned_abs());
        }
        if r.cpu_quota != 0 {
            cpu = cpu.quota(r.cpu_quota);
        }
        if period != 0 {
            cpu = cpu.period(period.unsigned_abs());
        }
        if !r.cpuset_cpus.is_empty() {
            cpu = cpu.cpus(r.cpuset_cpus.clone());
        }
        if !r.cpuset_mems.is_empty() {
            cpu = cpu.mems(r.cpuset_mems.clone());
        }
        out.set_cpu(Some(cpu.build().map_err(build("cpu"))?));
    }

    let limit = non_negative(r.memory_limit_in_bytes, "memory_limit_in_bytes")?;
    let swap = r.memory_swap_limit_in_bytes;
    if swap < -1 {
        return Err(Error::InvalidArgument(format!(
            "linux.resources.memory_swap_limit_in_bytes: {swap} is negative"
        )));
    }
    if limit != 0 && swap > 0 && swap < limit {
        return Err(Error::InvalidArgument(format!(
            "linux.resources.memory_swap_limit_in_bytes: {swap} is below the memory limit {limit}"
        )));
    }
    if limit != 0 || swap != 0 {
        let mut mem = LinuxMemoryBuilder::default();
        if limit != 0 {
            mem = mem.limit(limit);
        }
        if swap != 0 {
            mem = mem.swap(swap);
        }
        out.set_memory(Some(mem.build().map_err(build("memory"))?));
    }

    if !r.hugepage_limits.is_empty() {
        let mut pages = Vec::with_capacity(r.hugepage_limits.len());
        for (i, h) in r.hugepage_limits.iter().enumerate() {
            if h.page_size.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "linux.resources.hugepage_limits[{i}].page_size: empty"
                )));
            }
            let limit = i64::try_from(h.limit).map_err(|_| {
                Error::InvalidArgument(format!(
                    "linux.resources.hugepage_limits[{i}].limit: {} is too large",
                    h.limit
                ))
            })?;
            pages.push(
                LinuxHugepageLimitBuilder::default()
                    .page_size(h.page_size.clone())
                    .limit(limit)
                    .build()
                    .map_err(build("hugepage limit"))?,
            );
        }
        out.set_hugepage_limits(Some(pages));
    }

    if !r.unified.is_empty() {
        for k in r.unified.keys() {
            if k.is_empty() || k.contains('/') || k.starts_with('.') {
                return Err(Error::InvalidArgument(format!(
                    "linux.resources.unified[{k:?}]: not a cgroup file name"
                )));
            }
        }
        out.set_unified(Some(r.unified.clone().into_iter().collect()));
    }
    Ok(out)
}

/// berthd's own `oom_score_adj`: the lowest value it may hand to a child
/// without CAP_SYS_RESOURCE.
pub fn current_oom_score_adj(path: &Path) -> Result<i32> {
    let text = std::fs::read_to_string(path).map_err(Error::io("read", path))?;
    text.trim()
        .parse()
        .map_err(|e| Error::Internal(format!("parse {}: {e}", path.display())))
}

/// The requested score, raised to `floor` when it is lower.
pub fn clamp_oom_score_adj(requested: i32, floor: Option<i32>) -> i32 {
    match floor {
        Some(f) if requested < f => f,
        _ => requested,
    }
}

/// `process.oomScoreAdj`: the request's value (kubelet always sends one), range
/// checked, clamped to berthd's own when `restrict` is set.
pub fn oom_score_adj(r: Option<&LinuxContainerResources>, restrict: bool) -> Result<Option<i32>> {
    let Some(r) = r else {
        return Ok(None);
    };
    if !(-1000..=1000).contains(&r.oom_score_adj) {
        return Err(Error::InvalidArgument(format!(
            "linux.resources.oom_score_adj: {} is outside -1000..1000",
            r.oom_score_adj
        )));
    }
    // Checked above: -1000..=1000.
    let requested = i32::try_from(r.oom_score_adj).unwrap_or(0);
    let floor = if restrict {
        Some(current_oom_score_adj(Path::new(
            "/proc/self/oom_score_adj",
        ))?)
    } else {
        None
    };
    Ok(Some(clamp_oom_score_adj(requested, floor)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::HugepageLimit;

    #[test]
    fn maps_every_field() {
        let r = LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            cpu_shares: 512,
            memory_limit_in_bytes: 64 << 20,
            memory_swap_limit_in_bytes: 128 << 20,
            oom_score_adj: 500,
            cpuset_cpus: "0-1".into(),
            cpuset_mems: "0".into(),
            hugepage_limits: vec![HugepageLimit {
                page_size: "2MB".into(),
                limit: 4 << 21,
            }],
            unified: [("memory.high".to_string(), "1000000".to_string())].into(),
        };
        let out = linux_resources(Some(&r)).unwrap();
        let cpu = out.cpu().clone().unwrap();
        assert_eq!(cpu.shares(), Some(512));
        assert_eq!(cpu.quota(), Some(50_000));
        assert_eq!(cpu.period(), Some(100_000));
        assert_eq!(cpu.cpus().as_deref(), Some("0-1"));
        assert_eq!(cpu.mems().as_deref(), Some("0"));
        let mem = out.memory().unwrap();
        assert_eq!(mem.limit(), Some(64 << 20));
        assert_eq!(mem.swap(), Some(128 << 20));
        let pages = out.hugepage_limits().clone().unwrap();
        assert_eq!(pages[0].page_size(), "2MB");
        assert_eq!(pages[0].limit(), 4 << 21);
        assert_eq!(
            out.unified()
                .as_ref()
                .unwrap()
                .get("memory.high")
                .map(String::as_str),
            Some("1000000")
        );
        assert_eq!(oom_score_adj(Some(&r), false).unwrap(), Some(500));
    }

    #[test]
    fn unset_fields_stay_unset() {
        let out = linux_resources(Some(&LinuxContainerResources::default())).unwrap();
        assert!(out.cpu().is_none() && out.memory().is_none());
        assert!(out.hugepage_limits().is_none() && out.unified().is_none());
        let out = linux_resources(Some(&LinuxContainerResources {
            memory_limit_in_bytes: 1 << 20,
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(out.memory().as_ref().unwrap().swap(), None);
        assert!(linux_resources(None).unwrap().memory().is_none());
        assert_eq!(oom_score_adj(None, true).unwrap(), None);
    }

    #[test]
    fn rejects_bad_values_naming_the_field() {
        let cases = [
            (
                LinuxContainerResources {
                    cpu_shares: -2,
                    ..Default::default()
                },
                "cpu_shares",
            ),
            (
                LinuxContainerResources {
                    cpu_quota: -5,
                    ..Default::default()
                },
                "cpu_quota",
            ),
            (
                LinuxContainerResources {
                    memory_limit_in_bytes: -1,
                    ..Default::default()
                },
                "memory_limit_in_bytes",
            ),
            (
                LinuxContainerResources {
                    memory_limit_in_bytes: 10,
                    memory_swap_limit_in_bytes: 5,
                    ..Default::default()
                },
                "memory_swap_limit_in_bytes",
            ),
            (
                LinuxContainerResources {
                    hugepage_limits: vec![HugepageLimit {
                        page_size: "1GB".into(),
                        limit: u64::MAX,
                    }],
                    ..Default::default()
                },
                "hugepage_limits[0].limit",
            ),
            (
                LinuxContainerResources {
                    unified: [("../x".to_string(), "1".to_string())].into(),
                    ..Default::default()
                },
                "unified",
            ),
        ];
        for (r, field) in cases {
            let err = linux_resources(Some(&r)).unwrap_err();
            assert!(err.to_string().contains(field), "{field}: {err}");
        }
        let r = LinuxContainerResources {
            oom_score_adj: 1001,
            ..Default::default()
        };
        assert!(oom_score_adj(Some(&r), false)
            .unwrap_err()
            .to_string()
            .contains("oom_score_adj"));
    }

    #[test]
    fn oom_clamp() {
        assert_eq!(clamp_oom_score_adj(-998, Some(0)), 0);
        assert_eq!(clamp_oom_score_adj(-998, Some(-999)), -998);
        assert_eq!(clamp_oom_score_adj(1000, Some(0)), 1000);
        assert_eq!(clamp_oom_score_adj(-998, None), -998);

        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("oom");
        std::fs::write(&f, "-500\n").unwrap();
        assert_eq!(current_oom_score_adj(&f).unwrap(), -500);
        current_oom_score_adj(&dir.path().join("missing")).unwrap_err();

        // The real file: a restricted request below our own score comes back at it.
        let ours = current_oom_score_adj(Path::new("/proc/self/oom_score_adj")).unwrap();
        let r = LinuxContainerResources {
            oom_score_adj: -1000,
            ..Default::default()
        };
        assert_eq!(
            oom_score_adj(Some(&r), true).unwrap(),
            Some(ours.max(-1000))
        );
        assert_eq!(oom_score_adj(Some(&r), false).unwrap(), Some(-1000));
    }
}

//! UpdatePodSandboxResources: kubelet resized the pod's cgroup (in-place pod
//! resize) and tells the runtime the new overhead and resources.
//!
//! The pod-level cgroup is the pod's `linux.cgroup_parent` (kubelet's
//! `kubepods/…/pod<uid>`), which holds the cgroups of all its containers.
//! berthd writes the pod's total (resources + overhead) there for the cpu,
//! cpuset and memory controllers, so the limits hold even when something
//! else resized it differently, and keeps both values in the pod record, where
//! PodSandboxStatus (verbose) and a restarted berthd find them. A pod created
//! without its own cgroup parent shares berthd's default parent with every
//! other pod: writing a pod limit there would limit them all, so that is
//! refused.

use std::path::{Path, PathBuf};

use berth_proto::v1::{
    LinuxContainerResources, UpdatePodSandboxResourcesRequest, UpdatePodSandboxResourcesResponse,
};

use super::lifecycle::{blocking, runtime_error};
use super::CriService;
use crate::error::{Error, Result};
use crate::spec::resources::linux_resources;
use crate::state::{PodResources, PodState};

/// Where cgroupfs is mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

impl CriService {
    pub(crate) async fn update_pod_sandbox_resources(
        &self,
        req: UpdatePodSandboxResourcesRequest,
    ) -> Result<UpdatePodSandboxResourcesResponse> {
        let overhead = req.overhead.unwrap_or_default();
        let resources = req.resources.unwrap_or_default();
        check("overhead", &overhead)?;
        check("resources", &resources)?;
        let lc = &self.lifecycle;
        let (id, entry) = lc.pods.must_find(&req.pod_sandbox_id)?;
        let op = entry.lock().await;
        let pod = entry.get();
        if pod.state != PodState::Ready {
            return Err(Error::FailedPrecondition(format!(
                "pod sandbox {id} is not ready: only a ready pod's resources can be updated"
            )));
        }
        let own_parent = pod
            .config
            .linux
            .as_ref()
            .is_some_and(|l| !l.cgroup_parent.is_empty());
        if !own_parent {
            return Err(Error::FailedPrecondition(format!(
                "pod sandbox {id} has no pod-level cgroup: it was created without linux.cgroup_parent, so its containers share {} with every other pod",
                pod.cgroup_parent
            )));
        }
        let rel = pod_cgroup_rel(&pod.cgroup_parent)?;
        let total = linux_resources(Some(&pod_total(&resources, &overhead)))?;
        let pod_id = id.clone();
        blocking(move || {
            let root = Path::new(CGROUP_ROOT);
            let layout = berth_runtime::cgroups::detect_layout(root).map_err(runtime_error)?;
            if !pod_cgroup_exists(layout, root, &rel) {
                return Err(Error::FailedPrecondition(format!(
                    "pod sandbox {pod_id}: its cgroup {} does not exist",
                    rel.display()
                )));
            }
            berth_runtime::cgroups::manager(layout, root, &rel)
                .apply(&total)
                .map_err(runtime_error)
        })
        .await?;
        entry.update(&op, &lc.store, lc.pods.table(), &id, |r| {
            r.resources = Some(PodResources {
                overhead,
                resources,
            })
        })?;
        tracing::info!(pod_sandbox_id = %id, "pod sandbox resources updated");
        Ok(UpdatePodSandboxResourcesResponse {})
    }
}

/// Validates one of the two resource sets, naming the request field.
fn check(field: &str, r: &LinuxContainerResources) -> Result<()> {
    if !r.unified.is_empty() || !r.hugepage_limits.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{field}: only cpu, cpuset and memory can be set on a pod cgroup"
        )));
    }
    linux_resources(Some(r)).map(|_| ()).map_err(|e| match e {
        Error::InvalidArgument(m) => {
            Error::InvalidArgument(m.replacen("linux.resources", field, 1))
        }
        e => e,
    })
}

/// What the pod cgroup gets: the sum of the containers' resources and the
/// sandbox overhead for the additive limits; the cpusets of `resources`
/// (overhead has no CPUs of its own). A quota of its own on only one side
/// means no quota: an unlimited part makes the pod unlimited.
fn pod_total(
    resources: &LinuxContainerResources,
    overhead: &LinuxContainerResources,
) -> LinuxContainerResources {
    let add = |a: i64, b: i64| a.max(0).saturating_add(b.max(0));
    let cpu_quota = match (resources.cpu_quota, overhead.cpu_quota) {
        (a, b) if a > 0 && b > 0 => a.saturating_add(b),
        (a, 0) if a > 0 => a,
        (0, b) if b > 0 => b,
        (a, b) if a == -1 || b == -1 => -1,
        _ => 0,
    };
    LinuxContainerResources {
        cpu_period: if resources.cpu_period > 0 {
            resources.cpu_period
        } else {
            overhead.cpu_period
        },
        cpu_quota,
        cpu_shares: add(resources.cpu_shares, overhead.cpu_shares),
        memory_limit_in_bytes: add(
            resources.memory_limit_in_bytes,
            overhead.memory_limit_in_bytes,
        ),
        cpuset_cpus: resources.cpuset_cpus.clone(),
        cpuset_mems: resources.cpuset_mems.clone(),
        ..Default::default()
    }
}

/// The pod cgroup relative to each hierarchy root.
fn pod_cgroup_rel(parent: &str) -> Result<PathBuf> {
    if parent.ends_with(".slice") {
        return Err(Error::FailedPrecondition(format!(
            "linux.cgroup_parent: {parent:?} is a systemd slice; berth only supports the cgroupfs driver"
        )));
    }
    let rel = PathBuf::from(parent.trim_start_matches('/'));
    if rel.as_os_str().is_empty()
        || rel
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(Error::FailedPrecondition(format!(
            "linux.cgroup_parent: {parent:?} is not a cgroup below the root"
        )));
    }
    Ok(rel)
}

fn pod_cgroup_exists(layout: berth_runtime::cgroups::Layout, root: &Path, rel: &Path) -> bool {
    use berth_runtime::cgroups::Layout;
    match layout {
        Layout::V2 => root.join(rel).is_dir(),
        Layout::V1 | Layout::Hybrid => ["cpu", "memory", "cpuset"]
            .iter()
            .any(|c| root.join(c).join(rel).is_dir()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(shares: i64, quota: i64, mem: i64) -> LinuxContainerResources {
        LinuxContainerResources {
            cpu_shares: shares,
            cpu_quota: quota,
            cpu_period: 100_000,
            memory_limit_in_bytes: mem,
            cpuset_cpus: "0".into(),
            ..Default::default()
        }
    }

    #[test]
    fn pod_total_adds_overhead_to_the_containers_sum() {
        let t = pod_total(&res(1024, 50_000, 64 << 20), &res(128, 10_000, 8 << 20));
        assert_eq!(
            (t.cpu_shares, t.cpu_quota, t.memory_limit_in_bytes),
            (1152, 60_000, 72 << 20)
        );
        assert_eq!((t.cpu_period, t.cpuset_cpus.as_str()), (100_000, "0"));
        // No overhead: the resources as they are.
        let t = pod_total(&res(512, 20_000, 0), &LinuxContainerResources::default());
        assert_eq!(
            (t.cpu_shares, t.cpu_quota, t.memory_limit_in_bytes),
            (512, 20_000, 0)
        );
        // An unlimited side keeps the pod unlimited.
        let t = pod_total(&res(2, -1, 0), &res(2, 10_000, 0));
        assert_eq!(t.cpu_quota, -1);
    }

    #[test]
    fn bad_values_and_parents_are_refused_naming_the_field() {
        let e = check("overhead", &res(-5, 0, 0)).unwrap_err().to_string();
        assert!(e.starts_with("overhead.cpu_shares"), "{e}");
        let mut r = res(2, 0, 0);
        r.unified.insert("memory.high".into(), "1".into());
        assert!(check("resources", &r)
            .unwrap_err()
            .to_string()
            .starts_with("resources:"));
        assert_eq!(
            pod_cgroup_rel("/kubepods/pod1").unwrap(),
            PathBuf::from("kubepods/pod1")
        );
        pod_cgroup_rel("/kubepods/../etc").unwrap_err();
        pod_cgroup_rel("/").unwrap_err();
        pod_cgroup_rel("kubepods-pod1.slice").unwrap_err();
    }
}

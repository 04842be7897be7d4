//! PodSandboxStatus, ListPodSandbox and StreamPodSandboxes.

use std::collections::HashMap;

use berth_proto::encoded::{Encoded, ListPodSandboxReply, StreamPodSandboxesReply};
use berth_proto::v1::{
    ListPodSandboxRequest, PodSandbox, PodSandboxFilter, PodSandboxStatusRequest,
    PodSandboxStatusResponse, StreamPodSandboxesRequest,
};

use super::container_status::STREAM_PAGE;
use super::{BoxStream, CriService};
use crate::error::{Error, Result};
use crate::state::{id_matches, labels_match, now_nanos, PodRecord, PodState};

impl CriService {
    pub(crate) async fn pod_sandbox_status(
        &self,
        req: PodSandboxStatusRequest,
    ) -> Result<PodSandboxStatusResponse> {
        let lc = &self.lifecycle;
        let (id, entry) = lc.pods.must_find(&req.pod_sandbox_id)?;
        let rec = entry.get();
        if rec.state == PodState::Creating {
            return Err(Error::NotFound(format!(
                "pod sandbox {id} is still being created"
            )));
        }
        let containers_statuses = lc
            .containers
            .records()
            .into_iter()
            .filter(|c| c.pod_id == id && c.state != crate::state::ContainerState::Creating)
            .map(|c| c.to_status())
            .collect();
        let mut info = HashMap::new();
        if req.verbose {
            info.insert("info".to_string(), verbose_info(&rec)?);
        }
        Ok(PodSandboxStatusResponse {
            status: Some(rec.to_status()),
            info,
            containers_statuses,
            timestamp: now_nanos(),
        })
    }

    pub(crate) async fn list_pod_sandbox(
        &self,
        req: ListPodSandboxRequest,
    ) -> Result<ListPodSandboxReply> {
        let lc = &self.lifecycle;
        let filter = req.filter.filter(|f| *f != PodSandboxFilter::default());
        if filter.is_none() {
            // kubelet's relist: the same reply until a pod changes.
            let generation = lc.pods.generation();
            return Ok(lc
                .all_pods
                .get_or_build(generation, || self.matching_pods(None).into()));
        }
        Ok(self.matching_pods(filter.as_ref()).into())
    }

    pub(crate) async fn stream_pod_sandboxes(
        &self,
        req: StreamPodSandboxesRequest,
    ) -> Result<BoxStream<StreamPodSandboxesReply>> {
        let all = self.matching_pods(req.filter.as_ref());
        let pages: Vec<_> = all
            .chunks(STREAM_PAGE)
            .map(|c| Ok(c.to_vec().into()))
            .collect();
        Ok(Box::pin(futures::stream::iter(pages)))
    }

    /// The encoded listing form of every pod that passes `filter`.
    fn matching_pods(&self, filter: Option<&PodSandboxFilter>) -> Vec<Encoded<PodSandbox>> {
        self.lifecycle.pods.listed_filter_map(|l| {
            filter
                .is_none_or(|f| pod_matches(f, &l.msg))
                .then(|| l.wire.clone())
        })
    }
}

/// Whether a pod passes every set field of `f`.
pub(crate) fn pod_matches(f: &PodSandboxFilter, p: &PodSandbox) -> bool {
    id_matches(&f.id, &p.id)
        && f.state.as_ref().is_none_or(|s| s.state == p.state)
        && labels_match(&f.label_selector, &p.labels)
}

fn verbose_info(rec: &PodRecord) -> Result<String> {
    serde_json::to_string(&serde_json::json!({
        "name": rec.name,
        "podDir": rec.pod_dir,
        "namespaceDir": rec.ns_dir,
        "namespaces": rec.namespaces,
        "cgroupParent": rec.cgroup_parent,
        "hostname": rec.config.hostname,
        "logDirectory": rec.config.log_directory,
        "runtimeHandler": rec.runtime_handler,
        "resources": rec.resources.as_ref().map(|r| serde_json::json!({
            "overhead": resources_json(&r.overhead),
            "resources": resources_json(&r.resources),
        })),
    }))
    .map_err(|e| Error::Internal(format!("verbose pod info: {e}")))
}

/// The Linux resources in the camelCase JSON of containerd's verbose info.
fn resources_json(r: &berth_proto::v1::LinuxContainerResources) -> serde_json::Value {
    serde_json::json!({
        "cpuPeriod": r.cpu_period,
        "cpuQuota": r.cpu_quota,
        "cpuShares": r.cpu_shares,
        "memoryLimitInBytes": r.memory_limit_in_bytes,
        "cpusetCpus": r.cpuset_cpus,
        "cpusetMems": r.cpuset_mems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{PodSandboxConfig, PodSandboxState, PodSandboxStateValue};

    fn rec(id: &str, state: PodState, app: &str) -> PodRecord {
        let mut config = PodSandboxConfig::default();
        config.labels.insert("app".into(), app.into());
        PodRecord {
            version: 1,
            id: id.into(),
            name: id.into(),
            config,
            runtime_handler: String::new(),
            state,
            created_at: 0,
            pod_dir: "/p".into(),
            ns_dir: None,
            namespaces: Default::default(),
            cgroup_parent: "/berth".into(),
            ips: None,
            resources: None,
            stopped_cleanly: false,
        }
    }

    #[test]
    fn filters_combine_id_prefix_state_and_labels() {
        let a = rec("aa11", PodState::Ready, "web").to_cri();
        let b = rec("ab22", PodState::NotReady, "db").to_cri();
        let f = PodSandboxFilter {
            id: "ab".into(),
            ..Default::default()
        };
        assert!(!pod_matches(&f, &a) && pod_matches(&f, &b));
        let f = PodSandboxFilter {
            state: Some(PodSandboxStateValue {
                state: PodSandboxState::SandboxReady as i32,
            }),
            ..Default::default()
        };
        assert!(pod_matches(&f, &a) && !pod_matches(&f, &b));
        let mut f = PodSandboxFilter::default();
        f.label_selector.insert("app".into(), "web".into());
        assert!(pod_matches(&f, &a) && !pod_matches(&f, &b));
    }
}

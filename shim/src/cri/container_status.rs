//! ContainerStatus, ListContainers and StreamContainers.

use std::collections::HashMap;

use berth_proto::v1::{
    Container, ContainerFilter, ContainerStatusRequest, ContainerStatusResponse,
    ListContainersRequest, ListContainersResponse, StreamContainersRequest,
    StreamContainersResponse,
};

use super::{BoxStream, CriService};
use crate::error::{Error, Result};
use crate::state::{id_matches, labels_match, ContainerRecord, ContainerState};

/// Containers per StreamContainers reply.
pub(crate) const STREAM_PAGE: usize = 100;

impl CriService {
    pub(crate) async fn container_status(
        &self,
        req: ContainerStatusRequest,
    ) -> Result<ContainerStatusResponse> {
        let lc = &self.lifecycle;
        let (id, _) = lc.containers.must_find(&req.container_id)?;
        let rec = lc.refresh_if_idle(&id).await?.ok_or_else(|| {
            Error::NotFound(format!("container {:?} not found", req.container_id))
        })?;
        if rec.state == ContainerState::Creating {
            return Err(Error::NotFound(format!(
                "container {id} is still being created"
            )));
        }
        let mut info = HashMap::new();
        if req.verbose {
            info.insert("info".to_string(), verbose_info(&rec)?);
        }
        Ok(ContainerStatusResponse {
            status: Some(rec.to_status()),
            info,
        })
    }

    pub(crate) async fn list_containers(
        &self,
        req: ListContainersRequest,
    ) -> Result<ListContainersResponse> {
        Ok(ListContainersResponse {
            containers: self.matching_containers(req.filter.as_ref()),
        })
    }

    pub(crate) async fn stream_containers(
        &self,
        req: StreamContainersRequest,
    ) -> Result<BoxStream<StreamContainersResponse>> {
        let all = self.matching_containers(req.filter.as_ref());
        let pages: Vec<_> = all
            .chunks(STREAM_PAGE)
            .map(|c| {
                Ok(StreamContainersResponse {
                    containers: c.to_vec(),
                })
            })
            .collect();
        Ok(Box::pin(futures::stream::iter(pages)))
    }

    fn matching_containers(&self, filter: Option<&ContainerFilter>) -> Vec<Container> {
        self.lifecycle
            .containers
            .listed_where(|c| filter.is_none_or(|f| container_matches(f, c)))
    }
}

/// Whether a container passes every set field of `f`.
pub(crate) fn container_matches(f: &ContainerFilter, c: &Container) -> bool {
    id_matches(&f.id, &c.id)
        && id_matches(&f.pod_sandbox_id, &c.pod_sandbox_id)
        && f.state.as_ref().is_none_or(|s| s.state == c.state)
        && labels_match(&f.label_selector, &c.labels)
}

fn verbose_info(rec: &ContainerRecord) -> Result<String> {
    let spec: serde_json::Value = std::fs::read(rec.bundle.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::Value::Null);
    serde_json::to_string(&serde_json::json!({
        "sandboxID": rec.pod_id,
        "pid": rec.pid,
        "name": rec.name,
        "bundle": rec.bundle,
        "stateDir": rec.state_dir,
        "imageID": rec.image_id,
        "stopSignal": rec.stop_signal,
        "runtimeSpec": spec,
    }))
    .map_err(|e| Error::Internal(format!("verbose container info: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{ContainerConfig, ContainerStateValue};

    fn rec(id: &str, pod: &str, state: ContainerState, app: &str) -> ContainerRecord {
        let mut config = ContainerConfig::default();
        config.labels.insert("app".into(), app.into());
        ContainerRecord {
            version: 1,
            id: id.into(),
            pod_id: pod.into(),
            name: id.into(),
            config,
            state,
            created_at: 0,
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            image_id: String::new(),
            image_ref: String::new(),
            stop_signal: 15,
            bundle: "/b".into(),
            state_dir: "/s".into(),
            log_path: None,
            pid: 0,
            user: None,
        }
    }

    #[test]
    fn filters_combine_id_prefix_pod_state_and_labels() {
        let a = rec("aa11", "p1", ContainerState::Running, "web").to_cri();
        let b = rec("ab22", "p2", ContainerState::Exited, "db").to_cri();
        let all = ContainerFilter::default();
        assert!(container_matches(&all, &a) && container_matches(&all, &b));
        let f = ContainerFilter {
            id: "aa".into(),
            ..Default::default()
        };
        assert!(container_matches(&f, &a) && !container_matches(&f, &b));
        let f = ContainerFilter {
            pod_sandbox_id: "p2".into(),
            ..Default::default()
        };
        assert!(!container_matches(&f, &a) && container_matches(&f, &b));
        let f = ContainerFilter {
            state: Some(ContainerStateValue {
                state: berth_proto::v1::ContainerState::ContainerRunning as i32,
            }),
            ..Default::default()
        };
        assert!(container_matches(&f, &a) && !container_matches(&f, &b));
        let mut f = ContainerFilter {
            id: "a".into(),
            ..Default::default()
        };
        f.label_selector.insert("app".into(), "db".into());
        assert!(!container_matches(&f, &a) && container_matches(&f, &b));
    }
}

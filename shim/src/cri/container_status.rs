//! ContainerStatus, ListContainers and StreamContainers.

use std::collections::HashMap;

use berth_proto::encoded::{Encoded, ListContainersReply, StreamContainersReply};
use berth_proto::v1::{
    Container, ContainerFilter, ContainerStatusRequest, ContainerStatusResponse,
    ListContainersRequest, StreamContainersRequest,
};

use super::{BoxStream, CriService};
use crate::error::{Error, Result};
use crate::state::{id_matches, labels_match, ContainerRecord, ContainerState, Objects};

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
    ) -> Result<ListContainersReply> {
        let lc = &self.lifecycle;
        let filter = req.filter.filter(|f| *f != ContainerFilter::default());
        if filter.is_none() {
            // kubelet's relist: the same reply until a container changes.
            let generation = lc.containers.generation();
            return Ok(lc
                .all_containers
                .get_or_build(generation, || self.matching_containers(None).into()));
        }
        Ok(self.matching_containers(filter.as_ref()).into())
    }

    pub(crate) async fn stream_containers(
        &self,
        req: StreamContainersRequest,
    ) -> Result<BoxStream<StreamContainersReply>> {
        let all = self.matching_containers(req.filter.as_ref());
        let pages: Vec<_> = all
            .chunks(STREAM_PAGE)
            .map(|c| Ok(c.to_vec().into()))
            .collect();
        Ok(Box::pin(futures::stream::iter(pages)))
    }

    fn matching_containers(&self, filter: Option<&ContainerFilter>) -> Vec<Encoded<Container>> {
        matching(&self.lifecycle.containers, filter)
    }
}

/// The encoded listing form of every container that passes `filter`, in id order.
fn matching(
    containers: &Objects<ContainerRecord>,
    filter: Option<&ContainerFilter>,
) -> Vec<Encoded<Container>> {
    containers.listed_filter_map(|l| {
        filter
            .is_none_or(|f| container_matches(f, &l.msg))
            .then(|| l.wire.clone())
    })
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
    use prost::Message;

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

    /// What a client decodes from the reply built of `parts`.
    fn decoded(parts: Vec<Encoded<Container>>) -> Vec<Container> {
        let reply = ListContainersReply::from(parts);
        berth_proto::v1::ListContainersResponse::decode(reply.encode_to_vec().as_slice())
            .unwrap()
            .containers
    }

    #[tokio::test]
    async fn replies_decode_to_the_listing_of_the_current_records_that_match() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("m.redb")).unwrap();
        let objs: Objects<ContainerRecord> = Objects::new("containers", "container");
        let recs = [
            rec("aa11", "p1", ContainerState::Running, "web"),
            rec("ab22", "p2", ContainerState::Exited, "db"),
            rec("ac33", "p1", ContainerState::Creating, "web"),
            rec("bb44", "p1", ContainerState::Created, "db"),
        ];
        for r in &recs {
            objs.insert(&store, &r.id, r.clone()).unwrap();
        }
        let cri = |i: usize| recs[i].to_cri();
        // Creating is never listed.
        assert_eq!(decoded(matching(&objs, None)), [cri(0), cri(1), cri(3)]);
        let mut f = ContainerFilter {
            pod_sandbox_id: "p1".into(),
            ..Default::default()
        };
        assert_eq!(decoded(matching(&objs, Some(&f))), [cri(0), cri(3)]);
        f.label_selector.insert("app".into(), "db".into());
        assert_eq!(decoded(matching(&objs, Some(&f))), [cri(3)]);
        let f = ContainerFilter {
            id: "a".into(),
            state: Some(ContainerStateValue {
                state: berth_proto::v1::ContainerState::ContainerExited as i32,
            }),
            ..Default::default()
        };
        assert_eq!(decoded(matching(&objs, Some(&f))), [cri(1)]);

        // A change to a record shows in the next reply, encoded anew.
        let e = objs.get("aa11").unwrap();
        let g = e.lock().await;
        let now = e
            .update(&g, &store, objs.table(), "aa11", |r| {
                r.state = ContainerState::Exited;
                r.config.labels.insert("app".into(), "db".into());
            })
            .unwrap();
        assert_eq!(decoded(matching(&objs, Some(&f))), [now.to_cri(), cri(1)]);
        assert!(decoded(matching(&objs, None))
            .iter()
            .all(|c| c.id != "ac33"));
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

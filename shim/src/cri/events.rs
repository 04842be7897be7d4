//! GetContainerEvents: kubelet's evented PLEG. Every container transition
//! (created, started, stopped, deleted) is sent on one broadcast channel, in the
//! order the transitions were persisted, with the pod's status and the statuses
//! of all its containers at that moment.

use berth_proto::v1::{ContainerEventResponse, ContainerEventType, GetEventsRequest};
use tokio::sync::broadcast::error::RecvError;

use super::lifecycle::Lifecycle;
use super::{BoxStream, CriService};
use crate::error::Result;
use crate::state::{now_nanos, ContainerRecord};

impl Lifecycle {
    /// Publishes a transition of `c` (already persisted). Nobody listening is fine.
    pub(crate) fn emit(&self, kind: ContainerEventType, c: &ContainerRecord) {
        if self.events.receiver_count() == 0 {
            return;
        }
        let pod_sandbox_status = self.pods.get(&c.pod_id).map(|e| e.get().to_status());
        let mut containers_statuses: Vec<_> = self
            .containers
            .records()
            .into_iter()
            .filter(|r| r.pod_id == c.pod_id && r.id != c.id)
            .map(|r| r.to_status())
            .collect();
        if kind != ContainerEventType::ContainerDeletedEvent {
            containers_statuses.push(c.to_status());
        }
        let _ = self.events.send(ContainerEventResponse {
            container_id: c.id.clone(),
            container_event_type: kind as i32,
            created_at: now_nanos(),
            pod_sandbox_status,
            containers_statuses,
        });
    }
}

impl CriService {
    pub(crate) async fn get_container_events(
        &self,
        _req: GetEventsRequest,
    ) -> Result<BoxStream<ContainerEventResponse>> {
        let rx = self.lifecycle.events.subscribe();
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(ev) => return Some((Ok(ev), rx)),
                    Err(RecvError::Lagged(n)) => {
                        // kubelet falls back to relisting when it misses events;
                        // dropping the oldest is what a bounded channel can do.
                        tracing::warn!(missed = n, "container event subscriber fell behind");
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        });
        Ok(Box::pin(stream))
    }
}

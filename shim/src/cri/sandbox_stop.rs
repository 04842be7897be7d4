//! StopPodSandbox: kill every container of the pod, tear the pod's network
//! down, release its namespaces and shm. Idempotent: stopping a stopped pod
//! redoes the (no-op) teardown and succeeds, and stopping a pod that does not
//! exist (any more) succeeds too, as the CRI asks of a stop whose resources are
//! already reclaimed.

use std::sync::Arc;

use berth_proto::v1::{StopPodSandboxRequest, StopPodSandboxResponse};

use super::lifecycle::unmount;
use super::lifecycle::{blocking, runtime_error, Lifecycle};
use super::CriService;
use crate::error::{Error, Result};
use crate::state::{Entry, OpGuard, PodRecord, PodState};

impl CriService {
    pub(crate) async fn stop_pod_sandbox(
        &self,
        req: StopPodSandboxRequest,
    ) -> Result<StopPodSandboxResponse> {
        if req.pod_sandbox_id.is_empty() {
            return Err(Error::InvalidArgument("pod_sandbox_id: empty".into()));
        }
        let lc = self.lifecycle.clone();
        let Some((id, entry)) = lc.pods.find(&req.pod_sandbox_id)? else {
            tracing::debug!(pod_sandbox_id = %req.pod_sandbox_id, "stop of an unknown pod sandbox: nothing to do");
            return Ok(StopPodSandboxResponse {});
        };
        let op = entry.lock().await;
        if lc.pods.get(&id).is_none() {
            // Removed while we waited for its lock: already reclaimed.
            return Ok(StopPodSandboxResponse {});
        }
        lc.stop_pod_locked(&id, &entry, &op).await?;
        Ok(StopPodSandboxResponse {})
    }
}

impl Lifecycle {
    /// Stops pod `id`; the caller holds its operation lock.
    pub(crate) async fn stop_pod_locked(
        self: &Arc<Self>,
        id: &str,
        entry: &Entry<PodRecord>,
        op: &OpGuard<'_>,
    ) -> Result<()> {
        let rec = entry.get();
        if rec.state == PodState::Creating {
            return Err(Error::FailedPrecondition(format!(
                "pod sandbox {id} is still being created"
            )));
        }
        // kubelet has already given each container its grace period; what is
        // still alive now is killed at once, as containerd does.
        for c in self
            .containers
            .records()
            .into_iter()
            .filter(|c| c.pod_id == id)
        {
            let Some(ce) = self.containers.get(&c.id) else {
                continue;
            };
            let cop = ce.lock().await;
            if self.containers.get(&c.id).is_none() || !ce.get().state.can_stop() {
                continue;
            }
            self.stop_locked(&c.id, &ce, &cop, 0).await?;
        }
        if rec.state == PodState::NotReady && rec.stopped_cleanly {
            // Torn down by an earlier stop (kubelet stops, then removes).
            return Ok(());
        }
        let netns = rec.namespaces.net.clone();
        self.network_teardown(id, &rec.config, netns.as_deref())
            .await?;
        if let Some(dir) = rec.ns_dir.clone() {
            blocking(move || berth_runtime::unpin_namespaces(&dir).map_err(runtime_error)).await?;
        }
        unmount(&rec.pod_dir.join("shm"))?;
        if rec.state != PodState::NotReady || !rec.stopped_cleanly {
            entry.update(op, &self.store, self.pods.table(), id, |r| {
                r.state = PodState::NotReady;
                r.stopped_cleanly = true;
            })?;
            tracing::info!(pod_sandbox_id = %id, "pod sandbox stopped");
        }
        Ok(())
    }
}

//! RemovePodSandbox: stop the pod if needed, remove all its containers, delete
//! its directory and record, free its name. An unknown pod is already removed.

use berth_proto::v1::{RemovePodSandboxRequest, RemovePodSandboxResponse};

use super::lifecycle::remove_dir_if_exists;
use super::CriService;
use crate::error::{Error, Result};

impl CriService {
    pub(crate) async fn remove_pod_sandbox(
        &self,
        req: RemovePodSandboxRequest,
    ) -> Result<RemovePodSandboxResponse> {
        if req.pod_sandbox_id.is_empty() {
            return Err(Error::InvalidArgument("pod_sandbox_id: empty".into()));
        }
        let lc = self.lifecycle.clone();
        let Some((id, entry)) = lc.pods.find(&req.pod_sandbox_id)? else {
            return Ok(RemovePodSandboxResponse {});
        };
        let op = entry.lock().await;
        if lc.pods.get(&id).is_none() {
            return Ok(RemovePodSandboxResponse {});
        }
        lc.stop_pod_locked(&id, &entry, &op).await?;
        let ids: Vec<String> = lc
            .containers
            .records()
            .into_iter()
            .filter(|c| c.pod_id == id)
            .map(|c| c.id)
            .collect();
        for cid in ids {
            lc.remove_container(&cid).await?;
        }
        let rec = entry.get();
        remove_dir_if_exists(&rec.pod_dir)?;
        lc.pods.remove(&lc.store, &id)?;
        lc.pod_names.release(&rec.name, &id);
        tracing::info!(pod_sandbox_id = %id, "pod sandbox removed");
        Ok(RemovePodSandboxResponse {})
    }
}

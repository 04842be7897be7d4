//! RemoveContainer: force-stop, delete the runtime state, unmount and delete
//! the rootfs and bundle, drop the record and free the name. Removing an
//! unknown container succeeds (kubelet retries removals).

use berth_proto::v1::{ContainerEventType, RemoveContainerRequest, RemoveContainerResponse};

use super::lifecycle::remove_dir_if_exists;
use super::lifecycle::{blocking, runtime_error, Lifecycle};
use super::CriService;
use crate::error::{Error, Result};

impl CriService {
    pub(crate) async fn remove_container(
        &self,
        req: RemoveContainerRequest,
    ) -> Result<RemoveContainerResponse> {
        if req.container_id.is_empty() {
            return Err(Error::InvalidArgument("container_id: empty".into()));
        }
        let Some((id, _)) = self.lifecycle.containers.find(&req.container_id)? else {
            return Ok(RemoveContainerResponse {});
        };
        self.lifecycle.remove_container(&id).await?;
        Ok(RemoveContainerResponse {})
    }
}

impl Lifecycle {
    /// Removes container `id` (full id); gone already is fine.
    pub(crate) async fn remove_container(&self, id: &str) -> Result<()> {
        let Some(entry) = self.containers.get(id) else {
            return Ok(());
        };
        let op = entry.lock().await;
        if self.containers.get(id).is_none() {
            return Ok(());
        }
        let rec = entry.get();
        if !rec.state.can_remove() {
            return Err(Error::FailedPrecondition(format!(
                "container {id} is still being created"
            )));
        }
        let rec = if rec.state.can_stop() {
            self.stop_locked(id, &entry, &op, 0).await?
        } else {
            rec
        };
        let dir = rec.state_dir.clone();
        blocking(move || berth_runtime::delete_dir(&dir, true).map_err(runtime_error)).await?;
        let cfg = rec.bundle.join("config.json");
        match std::fs::remove_file(&cfg) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io("remove bundle config", &cfg)(e))
            }
            _ => {}
        }
        {
            let images = self.images.clone();
            let cid = id.to_string();
            blocking(move || images.release_rootfs(&cid)).await?;
        }
        remove_dir_if_exists(&rec.bundle)?;
        self.containers.remove(&self.store, id)?;
        self.container_names.release(&rec.name, id);
        drop(op);
        tracing::info!(container_id = %id, "container removed");
        self.emit(ContainerEventType::ContainerDeletedEvent, &rec);
        Ok(())
    }
}

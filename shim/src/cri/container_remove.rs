//! RemoveContainer: force-stop, delete the runtime state, unmount and delete
//! the rootfs and bundle, drop the record and free the name. Removing an
//! unknown container succeeds (kubelet retries removals).

use berth_proto::v1::{ContainerEventType, RemoveContainerRequest, RemoveContainerResponse};

use super::lifecycle::remove_dir_if_exists;
use super::lifecycle::{blocking, Lifecycle};
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
        let (dir, rt) = (rec.state_dir.clone(), self.runtime.clone());
        blocking(move || rt.delete(&dir)).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::lifecycle::fake::TestCri;
    use crate::state::ContainerState;

    fn req(id: &str) -> RemoveContainerRequest {
        RemoveContainerRequest {
            container_id: id.into(),
        }
    }

    #[tokio::test]
    async fn a_running_container_is_killed_then_every_trace_of_it_removed() {
        let t = TestCri::new().await;
        let id = t.add_container("web", ContainerState::Running);
        let bundle = t.record(&id).unwrap().bundle;
        t.cri.remove_container(req(&id)).await.unwrap();
        assert!(t.record(&id).is_none());
        assert!(t.runtime.container(&t.state_dir(&id)).is_none());
        assert!(!bundle.exists(), "{}", bundle.display());
        let calls = t.runtime.calls();
        let kill = calls.iter().position(|c| c == "kill").expect("killed");
        let delete = calls.iter().position(|c| c == "delete").expect("deleted");
        assert!(kill < delete, "{calls:?}");
        // Again, and an id never seen: both fine.
        t.cri.remove_container(req(&id)).await.unwrap();
        t.cri.remove_container(req(&"e".repeat(64))).await.unwrap();
    }

    #[tokio::test]
    async fn a_container_still_being_created_is_not_removed() {
        let t = TestCri::new().await;
        let id = t.add_container("new", ContainerState::Creating);
        let e = t.cri.remove_container(req(&id)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e}");
        assert!(t.record(&id).is_some());
    }

    #[tokio::test]
    async fn when_the_runtime_cannot_delete_the_record_stays_for_a_retry() {
        let t = TestCri::new().await;
        let id = t.add_container("web", ContainerState::Exited);
        t.runtime
            .fail("delete", || Error::Runtime("fake: device busy".into()));
        let e = t.cri.remove_container(req(&id)).await.unwrap_err();
        assert!(e.to_string().contains("device busy"), "{e}");
        assert_eq!(t.record(&id).unwrap().state, ContainerState::Exited);
        assert!(t.record(&id).unwrap().bundle.exists());
    }
}

//! StartContainer: let the created init exec the container's process.

use berth_proto::v1::{ContainerEventType, StartContainerRequest, StartContainerResponse};

use super::lifecycle::{blocking, runtime_error};
use super::CriService;
use crate::error::{Error, Result};
use crate::state::ContainerState;

impl CriService {
    pub(crate) async fn start_container(
        &self,
        req: StartContainerRequest,
    ) -> Result<StartContainerResponse> {
        let lc = &self.lifecycle;
        let (id, entry) = lc.containers.must_find(&req.container_id)?;
        let op = entry.lock().await;
        if lc.containers.get(&id).is_none() {
            return Err(Error::NotFound(format!("container {id:?} not found")));
        }
        let rec = lc.refresh_locked(&id, &entry, &op).await?;
        if !rec.state.can_start() {
            return Err(Error::FailedPrecondition(format!(
                "container {id} is {:?}: only a created container can be started",
                rec.state
            )));
        }
        let dir = rec.state_dir.clone();
        let started_at = blocking(move || {
            let c = berth_runtime::Container::load(&dir).map_err(runtime_error)?;
            c.start().map_err(runtime_error)?;
            Ok(c.state().ok().and_then(|s| s.started_at))
        })
        .await?;
        let rec = entry.update(&op, &lc.store, lc.containers.table(), &id, |r| {
            r.state = ContainerState::Running;
            r.started_at = started_at.unwrap_or_else(crate::state::now_nanos);
        })?;
        lc.emit(ContainerEventType::ContainerStartedEvent, &rec);
        // A process that exits at once is caught by the next look (status or the
        // exit watcher), which emits STOPPED after this STARTED.
        Ok(StartContainerResponse {})
    }
}

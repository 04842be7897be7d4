//! UpdateContainerResources (new cgroup limits for a live container) and
//! ReopenContainerLog (the monitor reopens its log file after kubelet rotated it).

use berth_proto::v1::{
    ReopenContainerLogRequest, ReopenContainerLogResponse, UpdateContainerResourcesRequest,
    UpdateContainerResourcesResponse,
};

use super::lifecycle::{blocking, runtime_error};
use super::CriService;
use crate::error::{Error, Result};
use crate::spec::resources::linux_resources;
use crate::state::ContainerState;

impl CriService {
    pub(crate) async fn update_container_resources(
        &self,
        req: UpdateContainerResourcesRequest,
    ) -> Result<UpdateContainerResourcesResponse> {
        let Some(new) = req.linux else {
            if req.windows.is_some() {
                return Err(Error::InvalidArgument(
                    "windows: Windows resources on a Linux runtime".into(),
                ));
            }
            return Ok(UpdateContainerResourcesResponse {});
        };
        let lc = &self.lifecycle;
        let (id, entry) = lc.containers.must_find(&req.container_id)?;
        let op = entry.lock().await;
        let rec = lc.refresh_locked(&id, &entry, &op).await?;
        if !matches!(rec.state, ContainerState::Created | ContainerState::Running) {
            return Err(Error::FailedPrecondition(format!(
                "container {id} is {:?}: only a created or running container can be updated",
                rec.state
            )));
        }
        let res = linux_resources(Some(&new))?;
        let dir = rec.state_dir.clone();
        blocking(move || {
            berth_runtime::Container::load(&dir)
                .and_then(|c| c.update(&res))
                .map_err(runtime_error)
        })
        .await?;
        entry.update(&op, &lc.store, lc.containers.table(), &id, |r| {
            r.config
                .linux
                .get_or_insert_with(Default::default)
                .resources = Some(new);
        })?;
        Ok(UpdateContainerResourcesResponse {})
    }

    pub(crate) async fn reopen_container_log(
        &self,
        req: ReopenContainerLogRequest,
    ) -> Result<ReopenContainerLogResponse> {
        let lc = &self.lifecycle;
        let (id, _) = lc.containers.must_find(&req.container_id)?;
        let rec = lc
            .refresh_if_idle(&id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("container {id:?} not found")))?;
        if rec.state != ContainerState::Running {
            return Err(Error::FailedPrecondition(format!(
                "container {id} is not running: its log is closed"
            )));
        }
        let dir = rec.state_dir.clone();
        blocking(move || {
            let c = berth_runtime::Container::load(&dir).map_err(runtime_error)?;
            let f = c.state_file();
            if !berth_runtime::container::state::is_alive(f.monitor_pid, f.monitor_start_time) {
                return Err(Error::FailedPrecondition(format!(
                    "container {}: its monitor is gone",
                    c.id()
                )));
            }
            // The monitor reopens its log on SIGUSR1.
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(f.monitor_pid),
                nix::sys::signal::Signal::SIGUSR1,
            )
            .map_err(|e| Error::Runtime(format!("signal monitor {}: {e}", f.monitor_pid)))
        })
        .await?;
        Ok(ReopenContainerLogResponse {})
    }
}

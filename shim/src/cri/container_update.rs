//! UpdateContainerResources (new cgroup limits for a live container) and
//! ReopenContainerLog (the monitor reopens its log file after kubelet rotated it).

use berth_proto::v1::{
    ReopenContainerLogRequest, ReopenContainerLogResponse, UpdateContainerResourcesRequest,
    UpdateContainerResourcesResponse,
};

use super::lifecycle::blocking;
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
        let (dir, rt) = (rec.state_dir.clone(), lc.runtime.clone());
        blocking(move || rt.update(&dir, &res)).await?;
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
        let (dir, rt) = (rec.state_dir.clone(), lc.runtime.clone());
        blocking(move || rt.reopen_log(&dir)).await?;
        Ok(ReopenContainerLogResponse {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::lifecycle::fake::TestCri;
    use berth_proto::v1::LinuxContainerResources;

    fn req(id: &str, shares: i64) -> UpdateContainerResourcesRequest {
        UpdateContainerResourcesRequest {
            container_id: id.into(),
            linux: Some(LinuxContainerResources {
                cpu_shares: shares,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn shares(t: &TestCri, id: &str) -> Option<u64> {
        let c = t.runtime.container(&t.state_dir(id)).unwrap();
        c.resources?.cpu().as_ref()?.shares()
    }

    #[tokio::test]
    async fn new_limits_reach_the_runtime_and_the_record() {
        let t = TestCri::new().await;
        let id = t.add_container("web", ContainerState::Running);
        t.cri
            .update_container_resources(req(&id, 512))
            .await
            .unwrap();
        assert_eq!(shares(&t, &id), Some(512));
        let rec = t.record(&id).unwrap();
        let kept = rec.config.linux.unwrap().resources.unwrap();
        assert_eq!(kept.cpu_shares, 512);
    }

    #[tokio::test]
    async fn an_exited_container_is_not_updated() {
        let t = TestCri::new().await;
        let id = t.add_container("done", ContainerState::Exited);
        let e = t
            .cri
            .update_container_resources(req(&id, 512))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e}");
        assert!(!t.runtime.calls().contains(&"update".to_string()));
    }

    #[tokio::test]
    async fn a_refused_update_leaves_the_recorded_limits_alone() {
        let t = TestCri::new().await;
        let id = t.add_container("web", ContainerState::Running);
        t.runtime.fail("update", || {
            Error::RuntimeCall(berth_runtime::Error::Cgroup {
                path: "/sys/fs/cgroup/cpu/x".into(),
                msg: "write cpu.shares: invalid argument".into(),
            })
        });
        let e = t
            .cri
            .update_container_resources(req(&id, 512))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("cpu.shares"), "{e}");
        let rec = t.record(&id).unwrap();
        assert!(rec.config.linux.and_then(|l| l.resources).is_none());
    }

    #[tokio::test]
    async fn reopen_log_asks_the_monitor_of_a_running_container_only() {
        let t = TestCri::new().await;
        let id = t.add_container("web", ContainerState::Running);
        let r = |id: &str| ReopenContainerLogRequest {
            container_id: id.into(),
        };
        t.cri.reopen_container_log(r(&id)).await.unwrap();
        assert_eq!(
            t.runtime.container(&t.state_dir(&id)).unwrap().log_reopened,
            1
        );
        let created = t.add_container("new", ContainerState::Created);
        let e = t.cri.reopen_container_log(r(&created)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e}");
        let e = t.cri.reopen_container_log(r("abcdef")).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound, "{e}");
    }
}

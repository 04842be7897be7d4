//! StartContainer: let the created init exec the container's process.

use berth_proto::v1::{ContainerEventType, StartContainerRequest, StartContainerResponse};

use super::lifecycle::blocking;
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
        let (dir, rt) = (rec.state_dir.clone(), lc.runtime.clone());
        let started_at = blocking(move || rt.start(&dir)).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::lifecycle::fake::TestCri;
    use crate::cri::lifecycle::Observed;

    fn req(id: &str) -> StartContainerRequest {
        StartContainerRequest {
            container_id: id.into(),
        }
    }

    #[tokio::test]
    async fn a_created_container_runs_with_the_runtimes_start_time() {
        let t = TestCri::new().await;
        let id = t.add_container("web", ContainerState::Created);
        t.cri.start_container(req(&id[..12])).await.unwrap();
        let rec = t.record(&id).unwrap();
        assert_eq!(rec.state, ContainerState::Running);
        assert_eq!(
            rec.started_at, 42,
            "the runtime's start time, not berthd's clock"
        );
        assert_eq!(
            t.runtime.container(&t.state_dir(&id)).unwrap().observed,
            Observed::Running { started_at: 42 }
        );
    }

    #[tokio::test]
    async fn only_a_created_container_starts() {
        let t = TestCri::new().await;
        for state in [ContainerState::Running, ContainerState::Exited] {
            let id = t.add_container(&format!("{state:?}").to_lowercase(), state);
            let e = t.cri.start_container(req(&id)).await.unwrap_err();
            assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e}");
            assert!(e.to_string().contains("only a created container"), "{e}");
        }
        assert!(!t.runtime.calls().contains(&"start".to_string()));
    }

    #[tokio::test]
    async fn unknown_and_empty_ids_are_refused() {
        let t = TestCri::new().await;
        let e = t.cri.start_container(req("feed")).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound, "{e}");
        let e = t.cri.start_container(req("")).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    }

    #[tokio::test]
    async fn a_runtime_failure_keeps_the_container_created_with_the_runtimes_code() {
        let t = TestCri::new().await;
        let id = t.add_container("web", ContainerState::Created);
        t.runtime.fail("start", || {
            Error::RuntimeCall(berth_runtime::Error::InvalidSpec {
                field: "process.args".into(),
                msg: "empty".into(),
            })
        });
        let e = t.cri.start_container(req(&id)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
        assert!(e.to_string().contains("process.args"), "{e}");
        assert_eq!(t.record(&id).unwrap().state, ContainerState::Created);
    }
}

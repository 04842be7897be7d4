//! StopContainer: the stop signal, `timeout` seconds of grace, then SIGKILL to
//! everything in the container's cgroup. Stopping a stopped container succeeds,
//! and so does stopping one that does not exist (any more): the CRI says a stop
//! "must not return an error if all relevant resources have already been
//! reclaimed", and a kubelet retrying a stop after a removal relies on it.

use std::time::{Duration, Instant};

use berth_proto::v1::{StopContainerRequest, StopContainerResponse};

use super::lifecycle::{blocking, Lifecycle, Observed};
use super::CriService;
use crate::error::{Error, Result};
use crate::state::{ContainerRecord, Entry, OpGuard};

/// How long SIGKILL may take to end a container before the stop fails.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// How often a stop looks for the exit.
const POLL: Duration = Duration::from_millis(20);

impl CriService {
    pub(crate) async fn stop_container(
        &self,
        req: StopContainerRequest,
    ) -> Result<StopContainerResponse> {
        if req.timeout < 0 {
            return Err(Error::InvalidArgument(format!(
                "timeout: {} is negative",
                req.timeout
            )));
        }
        if req.container_id.is_empty() {
            return Err(Error::InvalidArgument("container_id: empty".into()));
        }
        let lc = &self.lifecycle;
        let Some((id, entry)) = lc.containers.find(&req.container_id)? else {
            tracing::debug!(container_id = %req.container_id, "stop of an unknown container: nothing to do");
            return Ok(StopContainerResponse {});
        };
        let op = entry.lock().await;
        if lc.containers.get(&id).is_none() {
            // Removed while we waited for its lock: already reclaimed.
            return Ok(StopContainerResponse {});
        }
        lc.stop_locked(&id, &entry, &op, req.timeout).await?;
        Ok(StopContainerResponse {})
    }
}

impl Lifecycle {
    /// Stops a container whose operation lock the caller holds; returns the
    /// record with its exit recorded.
    pub(crate) async fn stop_locked(
        &self,
        id: &str,
        entry: &Entry<ContainerRecord>,
        op: &OpGuard<'_>,
        timeout_secs: i64,
    ) -> Result<ContainerRecord> {
        let rec = self.refresh_locked(id, entry, op).await?;
        if !rec.state.can_stop() {
            return Ok(rec);
        }
        let dir = rec.state_dir.clone();
        if timeout_secs > 0 && rec.state.is_running() {
            let sig = rec.stop_signal;
            let (d, rt) = (dir.clone(), self.runtime.clone());
            // An already-gone init is not an error: the wait below sees the exit.
            let _ = blocking(move || rt.kill(&d, sig, false)).await;
            let grace = Duration::from_secs(u64::try_from(timeout_secs).unwrap_or(0));
            if self.wait_exit(&dir, grace).await? {
                return self.refresh_locked(id, entry, op).await;
            }
            tracing::info!(container_id = %id, "grace period over, killing");
        }
        let (d, rt) = (dir.clone(), self.runtime.clone());
        let _ = blocking(move || {
            let _ = rt.kill(&d, libc::SIGKILL, false);
            rt.kill(&d, libc::SIGKILL, true)
        })
        .await;
        if !self.wait_exit(&dir, KILL_WAIT).await? {
            return Err(Error::DeadlineExceeded(format!(
                "container {id} did not exit within {}s of SIGKILL",
                KILL_WAIT.as_secs()
            )));
        }
        self.refresh_locked(id, entry, op).await
    }

    /// Waits until the container in `dir` is no longer alive; false on timeout.
    /// Wakes when the init's pidfd reports its exit (then the monitor records it,
    /// which `observe` waits for), so a stop does not wait out a polling tick.
    async fn wait_exit(&self, dir: &std::path::Path, limit: Duration) -> Result<bool> {
        let deadline = Instant::now() + limit;
        let (d, rt) = (dir.to_path_buf(), self.runtime.clone());
        let pidfd = blocking(move || Ok(rt.exit_fd(&d))).await?;
        // `AsyncFd::new` is deprecated because a type's `as_raw_fd` could change
        // under the reactor; an `OwnedFd` keeps its fd until dropped.
        #[allow(deprecated)]
        let mut exit_signal = pidfd.and_then(|fd| tokio::io::unix::AsyncFd::new(fd).ok());
        loop {
            let (d, rt) = (dir.to_path_buf(), self.runtime.clone());
            let seen = blocking(move || Ok(rt.observe(&d))).await?;
            if matches!(seen, Observed::Exited { .. } | Observed::Lost(_)) {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            let left = deadline - now;
            match &exit_signal {
                // Readable stays readable after the exit: once it has fired, the
                // record is being written and short ticks follow.
                Some(fd) => {
                    let wait = left.min(Duration::from_secs(1));
                    if tokio::time::timeout(wait, fd.readable()).await.is_ok() {
                        exit_signal = None;
                    }
                }
                None => tokio::time::sleep(POLL.min(left)).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::lifecycle::fake::TestCri;
    use crate::cri::lifecycle::ContainerRuntime;
    use crate::state::ContainerState;

    fn req(id: &str, timeout: i64) -> StopContainerRequest {
        StopContainerRequest {
            container_id: id.into(),
            timeout,
        }
    }

    #[tokio::test]
    async fn a_grace_period_sends_the_stop_signal_and_records_the_exit() {
        let t = TestCri::new().await;
        let id = t.add_container("web", ContainerState::Running);
        t.cri.stop_container(req(&id, 30)).await.unwrap();
        let c = t.runtime.container(&t.state_dir(&id)).unwrap();
        assert_eq!(c.signals, vec![(libc::SIGTERM, false)]);
        let rec = t.record(&id).unwrap();
        assert_eq!(rec.state, ContainerState::Exited);
        assert_eq!(rec.exit_code, 128 + libc::SIGTERM);
        assert_eq!(rec.reason, "Error");
    }

    #[tokio::test]
    async fn no_grace_period_kills_the_init_and_then_the_whole_cgroup() {
        let t = TestCri::new().await;
        let id = t.add_container("web", ContainerState::Running);
        t.cri.stop_container(req(&id, 0)).await.unwrap();
        let c = t.runtime.container(&t.state_dir(&id)).unwrap();
        assert_eq!(
            c.signals,
            vec![(libc::SIGKILL, false), (libc::SIGKILL, true)]
        );
        assert_eq!(t.record(&id).unwrap().exit_code, 128 + libc::SIGKILL);
    }

    #[tokio::test]
    async fn a_container_that_ignores_the_stop_signal_is_killed_after_the_grace_period() {
        let t = TestCri::new().await;
        let id = t.add_container("web", ContainerState::Running);
        t.runtime
            .with(&t.state_dir(&id), |c| c.honours_sigterm = false);
        t.cri.stop_container(req(&id, 1)).await.unwrap();
        let c = t.runtime.container(&t.state_dir(&id)).unwrap();
        assert_eq!(
            c.signals,
            vec![
                (libc::SIGTERM, false),
                (libc::SIGKILL, false),
                (libc::SIGKILL, true)
            ]
        );
        assert_eq!(t.record(&id).unwrap().exit_code, 128 + libc::SIGKILL);
    }

    #[tokio::test]
    async fn stopping_what_is_stopped_or_gone_succeeds_without_signals() {
        let t = TestCri::new().await;
        let id = t.add_container("done", ContainerState::Exited);
        t.cri.stop_container(req(&id, 10)).await.unwrap();
        assert!(t
            .runtime
            .container(&t.state_dir(&id))
            .unwrap()
            .signals
            .is_empty());
        // The CRI: a stop of reclaimed resources must not fail.
        t.cri
            .stop_container(req(&"f".repeat(64), 10))
            .await
            .unwrap();
        assert!(!t.runtime.calls().contains(&"kill".to_string()));
    }

    #[tokio::test]
    async fn bad_requests_name_the_field() {
        let t = TestCri::new().await;
        let e = t.cri.stop_container(req("abc", -1)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.to_string().contains("timeout"), "{e}");
        let e = t.cri.stop_container(req("", 1)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.to_string().contains("container_id"), "{e}");
    }

    #[tokio::test]
    async fn a_container_whose_monitor_vanished_is_recorded_as_unknown_not_stopped_again() {
        let t = TestCri::new().await;
        let id = t.add_container("lost", ContainerState::Running);
        t.runtime.delete(&t.state_dir(&id)).unwrap();
        t.cri.stop_container(req(&id, 10)).await.unwrap();
        let rec = t.record(&id).unwrap();
        assert_eq!(
            (rec.state, rec.reason.as_str()),
            (ContainerState::Exited, "Unknown")
        );
        assert!(!t.runtime.calls().contains(&"kill".to_string()));
    }
}

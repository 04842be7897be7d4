//! StopContainer: the stop signal, `timeout` seconds of grace, then SIGKILL to
//! everything in the container's cgroup. Stopping a stopped container succeeds,
//! and so does stopping one that does not exist (any more): the CRI says a stop
//! "must not return an error if all relevant resources have already been
//! reclaimed", and a kubelet retrying a stop after a removal relies on it.

use std::time::{Duration, Instant};

use berth_proto::v1::{StopContainerRequest, StopContainerResponse};

use super::container_exit::{observe, Observed};
use super::lifecycle::{blocking, Lifecycle};
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
            let d = dir.clone();
            // An already-gone init is not an error: the wait below sees the exit.
            let _ = blocking(move || {
                let c =
                    berth_runtime::Container::load(&d).map_err(super::lifecycle::runtime_error)?;
                c.kill(sig, false).map_err(super::lifecycle::runtime_error)
            })
            .await;
            let grace = Duration::from_secs(timeout_secs.min(i64::from(u32::MAX)) as u64);
            if wait_exit(&dir, grace).await? {
                return self.refresh_locked(id, entry, op).await;
            }
            tracing::info!(container_id = %id, "grace period over, killing");
        }
        let d = dir.clone();
        let _ = blocking(move || {
            let c = berth_runtime::Container::load(&d).map_err(super::lifecycle::runtime_error)?;
            let _ = c.kill(libc::SIGKILL, false);
            c.kill(libc::SIGKILL, true)
                .map_err(super::lifecycle::runtime_error)
        })
        .await;
        if !wait_exit(&dir, KILL_WAIT).await? {
            return Err(Error::DeadlineExceeded(format!(
                "container {id} did not exit within {}s of SIGKILL",
                KILL_WAIT.as_secs()
            )));
        }
        self.refresh_locked(id, entry, op).await
    }
}

/// Waits until the container in `dir` is no longer alive; false on timeout.
/// Wakes when the init's pidfd reports its exit (then the monitor records it,
/// which `observe` waits for), so a stop does not wait out a polling tick.
async fn wait_exit(dir: &std::path::Path, limit: Duration) -> Result<bool> {
    let deadline = Instant::now() + limit;
    let d = dir.to_path_buf();
    let pidfd = blocking(move || {
        Ok(berth_runtime::Container::load(&d)
            .ok()
            .and_then(|c| c.init_pidfd()))
    })
    .await?;
    // `AsyncFd::new` is deprecated because a type's `as_raw_fd` could change
    // under the reactor; an `OwnedFd` keeps its fd until dropped.
    #[allow(deprecated)]
    let mut exit_signal = pidfd.and_then(|fd| tokio::io::unix::AsyncFd::new(fd).ok());
    loop {
        let d = dir.to_path_buf();
        let seen = blocking(move || Ok(observe(&d))).await?;
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

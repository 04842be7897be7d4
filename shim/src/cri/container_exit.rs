//! Learning that a container's process ended. The monitor records every exit in
//! the container's state dir; berthd folds that into the record when it looks
//! (status, stop, remove) and, for GetContainerEvents, from one watcher task
//! that polls the live containers. The same fold runs at start-up for exits
//! that happened while berthd was down.

use std::sync::Arc;
use std::time::Duration;

use berth_proto::v1::ContainerEventType;

use super::lifecycle::{blocking, Lifecycle, Observed};
use crate::error::Result;
use crate::state::{ContainerRecord, ContainerState, Entry, OpGuard};

/// How often the watcher looks at live containers.
const WATCH_INTERVAL: Duration = Duration::from_millis(200);

impl Lifecycle {
    /// Brings a live record up to date with the runtime; emits STARTED/STOPPED
    /// for transitions it finds. Caller holds the entry's operation lock.
    pub(crate) async fn refresh_locked(
        &self,
        id: &str,
        entry: &Entry<ContainerRecord>,
        op: &OpGuard<'_>,
    ) -> Result<ContainerRecord> {
        let rec = entry.get();
        if !matches!(rec.state, ContainerState::Created | ContainerState::Running) {
            return Ok(rec);
        }
        let (dir, rt) = (rec.state_dir.clone(), self.runtime.clone());
        let seen = blocking(move || Ok(rt.observe(&dir))).await?;
        let (next, event) = match seen {
            Observed::Created => return Ok(rec),
            Observed::Running { .. } if rec.state == ContainerState::Running => return Ok(rec),
            Observed::Running { started_at } => {
                let r = entry.update(op, &self.store, self.containers.table(), id, |r| {
                    r.state = ContainerState::Running;
                    r.started_at = started_at;
                })?;
                (r, ContainerEventType::ContainerStartedEvent)
            }
            Observed::Exited {
                code,
                finished_at,
                oom_killed,
            } => {
                let r = entry.update(op, &self.store, self.containers.table(), id, |r| {
                    r.set_exited(code, finished_at, oom_killed)
                })?;
                (r, ContainerEventType::ContainerStoppedEvent)
            }
            Observed::Lost(msg) => {
                let r = entry.update(op, &self.store, self.containers.table(), id, |r| {
                    r.set_exit_unknown(&msg)
                })?;
                (r, ContainerEventType::ContainerStoppedEvent)
            }
        };
        if next.state == ContainerState::Exited {
            tracing::info!(container_id = %id, exit_code = next.exit_code, reason = %next.reason, "container exited");
        }
        self.emit(event, &next);
        Ok(next)
    }

    /// Refreshes one container by id unless another RPC is working on it (a
    /// StopContainer may hold it for a whole grace period); then its current
    /// record is answered as is, so status polls never stall behind a stop.
    pub(crate) async fn refresh_if_idle(&self, id: &str) -> Result<Option<ContainerRecord>> {
        let Some(entry) = self.containers.get(id) else {
            return Ok(None);
        };
        let Some(op) = entry.try_lock() else {
            return Ok(Some(entry.get()));
        };
        if self.containers.get(id).is_none() {
            return Ok(None);
        }
        self.refresh_locked(id, &entry, &op).await.map(Some)
    }
}

/// Polls live containers so exits become records (and events) promptly even
/// when nobody asks. Containers busy in another RPC are skipped for a round.
pub(crate) fn spawn_exit_watcher(lc: Arc<Lifecycle>) {
    let weak = Arc::downgrade(&lc);
    drop(lc);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(lc) = weak.upgrade() else { return };
            for (id, entry) in lc.containers.entries() {
                if !entry.get().state.is_running() {
                    continue;
                }
                let Some(op) = entry.try_lock() else { continue };
                if let Err(e) = lc.refresh_locked(&id, &entry, &op).await {
                    tracing::warn!(container_id = %id, error = %e, "refreshing container state failed");
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::lifecycle::fake::TestCri;

    #[tokio::test]
    async fn an_exit_the_runtime_recorded_becomes_the_records_and_an_event() {
        let t = TestCri::new().await;
        let id = t.add_container("web", ContainerState::Running);
        let mut events = t.cri.lifecycle.events.subscribe();
        t.runtime.with(&t.state_dir(&id), |c| {
            c.observed = Observed::Exited {
                code: 3,
                finished_at: 99,
                oom_killed: true,
            }
        });
        let rec = t.cri.lifecycle.refresh_if_idle(&id).await.unwrap().unwrap();
        assert_eq!(
            (
                rec.state,
                rec.exit_code,
                rec.finished_at,
                rec.reason.as_str()
            ),
            (ContainerState::Exited, 3, 99, "OOMKilled")
        );
        let ev = events.try_recv().expect("an event");
        assert_eq!(
            ev.container_event_type,
            ContainerEventType::ContainerStoppedEvent as i32
        );
        assert_eq!(ev.container_id, id);
        // Seen once: a second look changes nothing and says nothing.
        t.cri.lifecycle.refresh_if_idle(&id).await.unwrap();
        events.try_recv().unwrap_err();
    }

    #[tokio::test]
    async fn a_container_whose_runtime_state_vanished_is_unknown_with_the_reason() {
        let t = TestCri::new().await;
        let id = t.add_container("web", ContainerState::Created);
        t.runtime
            .fail("observe", || crate::error::Error::Internal("unused".into()));
        crate::cri::lifecycle::ContainerRuntime::delete(&*t.runtime, &t.state_dir(&id)).unwrap();
        let rec = t.cri.lifecycle.refresh_if_idle(&id).await.unwrap().unwrap();
        assert_eq!(
            (rec.state, rec.reason.as_str()),
            (ContainerState::Exited, "Unknown")
        );
        assert!(rec.message.contains("no such container"), "{}", rec.message);
    }
}

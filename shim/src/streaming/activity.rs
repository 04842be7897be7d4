//! Idle detection for one upgraded connection: every frame read or written
//! touches the clock; a watchdog cancels the connection once nothing moved for
//! the configured idle timeout (what kubelet's stream idle timeout does).
//! The same touches feed the streaming metrics: an `Activity` lives as long
//! as its connection's tasks, so it also counts the connection as open.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// Last time a frame went either way on a connection.
pub(crate) struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        crate::metrics::global().streaming_sessions.inc();
        Arc::new(Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        })
    }

    /// Records `bytes` read from the client now.
    pub(crate) fn touch_in(&self, bytes: usize) {
        crate::metrics::global().streaming_traffic(true, bytes);
        self.touch();
    }

    /// Records `bytes` written to the client now.
    pub(crate) fn touch_out(&self, bytes: usize) {
        crate::metrics::global().streaming_traffic(false, bytes);
        self.touch();
    }

    fn touch(&self) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.fetch_max(now, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }

    /// Cancels `cancel` once the connection was idle for `timeout`; ends with the connection.
    pub(crate) fn spawn_watchdog(self: &Arc<Self>, timeout: Duration, cancel: CancellationToken) {
        let activity = self.clone();
        tokio::spawn(async move {
            loop {
                let idle = activity.idle_for();
                if idle >= timeout {
                    tracing::debug!(?timeout, "streaming connection idle, closing");
                    cancel.cancel();
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(timeout - idle) => {}
                    _ = cancel.cancelled() => return,
                }
            }
        });
    }
}

impl Drop for Activity {
    fn drop(&mut self) {
        crate::metrics::global().streaming_sessions.dec();
    }
}

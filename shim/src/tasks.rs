//! Work an RPC hands to another task or thread, still inside the RPC's span
//! (and subscriber), so what it logs names the RPC and its ids. Every
//! `spawn_blocking` on an RPC's path goes through [`blocking`].

use std::future::Future;

use tracing::instrument::{Instrument, WithSubscriber};

use crate::error::{Error, Result};

/// Runs a synchronous runtime call on the blocking pool, inside the caller's
/// span and subscriber: a pool thread has neither, and the call's logs must
/// still name the RPC and its ids.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("blocking task failed: {e}")))?
}

/// [`blocking`] started now and awaited later (a worker that runs while the
/// caller feeds it).
pub(crate) fn spawn_blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> tokio::task::JoinHandle<T> {
    let span = tracing::Span::current();
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    tokio::task::spawn_blocking(move || {
        tracing::dispatcher::with_default(&dispatch, || span.in_scope(f))
    })
}

/// Runs `fut` in its own task and waits for it: if the RPC is cancelled the work
/// still finishes (and rolls back or commits) instead of stopping half-way. The
/// task keeps the caller's span (and subscriber), so what it logs, rollback
/// failures included, carries the RPC and its ids.
pub(crate) async fn detached<T: Send + 'static>(
    fut: impl Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    tokio::spawn(fut.in_current_span().with_current_subscriber())
        .await
        .map_err(|e| Error::Internal(format!("task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    // Regression: the tasks these helpers start used to log with no span, so
    // RunPodSandbox's rollback and CNI failures named neither RPC nor pod.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn detached_and_blocking_work_logs_inside_the_callers_span() {
        let (log, _guard) = crate::cri::test_log::Captured::install();
        let span = tracing::info_span!("rpc", rpc = "Probe", pod_sandbox_id = "p1");
        async {
            detached(async {
                tracing::warn!("from the detached task");
                blocking(|| {
                    tracing::warn!("from the blocking pool");
                    Ok(())
                })
                .await
            })
            .await
        }
        .instrument(span)
        .await
        .unwrap();
        for needle in ["from the detached task", "from the blocking pool"] {
            let line = log.line(needle);
            assert!(
                line.contains(r#"rpc{rpc="Probe" pod_sandbox_id="p1"}"#),
                "{line}"
            );
        }
    }
}

//! The undo stack of a multi-step create (RunPodSandbox, CreateContainer).

use std::future::Future;
use std::pin::Pin;

use crate::error::Result;

type UndoFn = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = Result<()>> + Send>> + Send>;

/// The rollback stack of a multi-step create: each step that changed something
/// pushes its undo; on failure the undos run in reverse, each failure logged
/// (and the rest still run); on success [`Rollback::disarm`] drops them.
#[derive(Default)]
pub(crate) struct Rollback {
    steps: Vec<(&'static str, UndoFn)>,
}

impl Rollback {
    /// Registers the undo of a step that just succeeded.
    pub fn push<F, Fut>(&mut self, what: &'static str, f: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        self.steps.push((what, Box::new(move || Box::pin(f()))));
    }

    /// Everything succeeded: keep it.
    pub fn disarm(mut self) {
        self.steps.clear();
    }

    /// Undoes every registered step, newest first. Returns whether all undos
    /// succeeded (the caller decides whether leftovers need marking).
    pub async fn run(mut self) -> bool {
        let mut clean = true;
        while let Some((what, undo)) = self.steps.pop() {
            if let Err(e) = undo().await {
                tracing::error!(step = what, error = %e, "rollback step failed");
                clean = false;
            }
        }
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn rollback_runs_undos_newest_first_and_keeps_going_after_a_failure() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut rb = Rollback::default();
        for (i, fail) in [(1, false), (2, true), (3, false)] {
            let log = log.clone();
            rb.push("step", move || async move {
                log.lock().unwrap().push(i);
                if fail {
                    Err(Error::Internal("undo failed".into()))
                } else {
                    Ok(())
                }
            });
        }
        assert!(!rb.run().await);
        assert_eq!(*log.lock().unwrap(), vec![3, 2, 1]);
    }

    #[tokio::test]
    async fn a_disarmed_rollback_undoes_nothing() {
        let hit = Arc::new(Mutex::new(false));
        let mut rb = Rollback::default();
        let h = hit.clone();
        rb.push("step", move || async move {
            *h.lock().unwrap() = true;
            Ok(())
        });
        rb.disarm();
        assert!(!*hit.lock().unwrap());
    }
}

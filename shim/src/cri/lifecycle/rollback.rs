//! The undo stack of a multi-step create (RunPodSandbox, CreateContainer).

use std::future::Future;
use std::pin::Pin;

use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Error, Result};
use crate::state::{Listed, NameGuard, Objects};
use crate::store::Store;

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

/// How a create RPC ends, the same for pods and containers. Success commits
/// the name (retries waiting on it get the id). On failure the waiters get
/// the error; a record the create had written is dropped when the rollback
/// was `clean`, and otherwise kept, changed by `mark` (NotReady, Unknown), with
/// the name held by it, so the kubelet's remove or the next start finishes
/// the cleanup instead of something leaking without a trace.
pub(crate) async fn settle<R>(
    objects: &Objects<R>,
    store: &Store,
    mut guard: NameGuard,
    outcome: std::result::Result<(), (Error, bool)>,
    mark: impl FnOnce(&mut R, &Error),
) -> Result<()>
where
    R: Clone + Serialize + DeserializeOwned + Listed,
{
    let id = guard.id().to_string();
    let (e, clean) = match outcome {
        Ok(()) => {
            guard.commit();
            return Ok(());
        }
        Err(failed) => failed,
    };
    guard.fail(&e);
    let Some(entry) = objects.get(&id) else {
        return Err(e);
    };
    if clean {
        objects.remove(store, &id)?;
    } else {
        tracing::error!(id = %id, error = %e, "rollback was incomplete; keeping the record for removal");
        let op = entry.lock().await;
        entry.update(&op, store, objects.table(), &id, |r| mark(r, &e))?;
        guard.keep_failed();
    }
    Err(e)
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

    mod settle {
        use super::super::settle;
        use crate::cri::lifecycle::fake::TestCri;
        use crate::error::Error;
        use crate::state::{ContainerState, NameGuard, Reservation};

        fn reserve(t: &TestCri, name: &str, id: &str) -> NameGuard {
            match t.cri.lifecycle.container_names.reserve(name, id) {
                Reservation::Fresh(g) => g,
                _ => panic!("{name} is taken"),
            }
        }

        async fn fail(t: &TestCri, id: &str, clean: bool) -> Error {
            let lc = &t.cri.lifecycle;
            let guard = reserve(t, "c", id);
            let e = Error::Runtime("step 3 failed".into());
            settle(&lc.containers, &lc.store, guard, Err((e, clean)), |r, e| {
                r.state = ContainerState::Unknown;
                r.message = e.to_string();
            })
            .await
            .unwrap_err()
        }

        #[tokio::test]
        async fn a_clean_rollback_leaves_no_record_and_frees_the_name() {
            let t = TestCri::new().await;
            let id = t.add_container("a", ContainerState::Creating);
            let e = fail(&t, &id, true).await;
            assert!(e.to_string().contains("step 3"), "{e}");
            assert!(t.record(&id).is_none());
            assert!(t.cri.lifecycle.container_names.holder("c").is_none());
        }

        #[tokio::test]
        async fn an_incomplete_rollback_keeps_the_record_marked_and_the_name_held() {
            let t = TestCri::new().await;
            let id = t.add_container("a", ContainerState::Creating);
            fail(&t, &id, false).await;
            let rec = t.record(&id).expect("kept for removal");
            assert_eq!(rec.state, ContainerState::Unknown);
            assert!(rec.message.contains("step 3"), "{}", rec.message);
            assert_eq!(t.cri.lifecycle.container_names.holder("c"), Some(id));
        }

        #[tokio::test]
        async fn success_commits_the_name() {
            let t = TestCri::new().await;
            let lc = &t.cri.lifecycle;
            let id = t.add_container("a", ContainerState::Created);
            let guard = reserve(&t, "c", &id);
            settle(&lc.containers, &lc.store, guard, Ok(()), |_, _| {})
                .await
                .unwrap();
            assert_eq!(lc.container_names.holder("c"), Some(id.clone()));
            assert_eq!(t.record(&id).unwrap().state, ContainerState::Created);
        }
    }
}

//! Name reservations. kubelet names every pod and container uniquely (name,
//! namespace, uid and attempt); the runtime must refuse a second object of the
//! same name. kubelet also retries a RunPodSandbox or CreateContainer whose
//! first call timed out on its side while still running on ours: that retry
//! waits for the first call and gets its outcome, instead of a "name reserved"
//! error or a second object.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::error::Error;

/// How a create call ended: the new id, or its error as `(code, message)`.
pub type Outcome = std::result::Result<String, (tonic::Code, String)>;

enum Slot {
    /// A create call holds the name and is still working.
    Pending {
        id: String,
        done: watch::Receiver<Option<Outcome>>,
    },
    /// The object exists.
    Held { id: String },
}

/// One kind of names (pods, containers).
#[derive(Clone, Default)]
pub struct Names {
    slots: Arc<Mutex<HashMap<String, Slot>>>,
}

// By hand: it holds handles (tasks, streams, callbacks, stores) with no useful
// Debug of their own.
impl std::fmt::Debug for Names {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Names").finish_non_exhaustive()
    }
}

/// What [`Names::reserve`] found.
#[derive(Debug)]
pub enum Reservation {
    /// The name is ours now; finish with [`NameGuard::commit`] or drop to release.
    Fresh(NameGuard),
    /// Another call holds it and is still running; wait for its outcome.
    InFlight {
        id: String,
        done: watch::Receiver<Option<Outcome>>,
    },
    /// An existing object has the name.
    Taken { id: String },
}

/// A pending reservation. Dropping it without [`NameGuard::commit`] frees the
#[derive(Debug)]
/// name and tells any waiting retry how the call failed.
pub struct NameGuard {
    names: Names,
    name: String,
    id: String,
    tx: Option<watch::Sender<Option<Outcome>>>,
    failure: Option<(tonic::Code, String)>,
}

impl Names {
    /// Reserves `name` for object `id`, or says who has it.
    pub fn reserve(&self, name: &str, id: &str) -> Reservation {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        match slots.get(name) {
            Some(Slot::Pending { id, done }) => Reservation::InFlight {
                id: id.clone(),
                done: done.clone(),
            },
            Some(Slot::Held { id }) => Reservation::Taken { id: id.clone() },
            None => {
                let (tx, rx) = watch::channel(None);
                slots.insert(
                    name.to_string(),
                    Slot::Pending {
                        id: id.to_string(),
                        done: rx,
                    },
                );
                Reservation::Fresh(NameGuard {
                    names: self.clone(),
                    name: name.to_string(),
                    id: id.to_string(),
                    tx: Some(tx),
                    failure: None,
                })
            }
        }
    }

    /// Marks `name` as held by an existing object (recovery).
    pub fn hold(&self, name: &str, id: &str) {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), Slot::Held { id: id.to_string() });
    }

    /// Frees `name` if `id` holds it (the object was removed).
    pub fn release(&self, name: &str, id: &str) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(slots.get(name), Some(Slot::Held { id: h }) if h == id) {
            slots.remove(name);
        }
    }

    /// Who holds `name`, if anyone.
    pub fn holder(&self, name: &str) -> Option<String> {
        match self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            Some(Slot::Pending { id, .. } | Slot::Held { id }) => Some(id.clone()),
            None => None,
        }
    }
}

impl NameGuard {
    /// The id the name was reserved for.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Records why the call failed, for retries waiting on it; the name is freed on drop.
    pub fn fail(&mut self, e: &Error) {
        self.failure = Some((e.code(), e.to_string()));
    }

    /// The call failed but left an object that could not be cleaned up (kept
    /// for a later remove): the name stays held by it, and waiting retries get
    /// the failure.
    pub fn keep_failed(mut self) {
        let mut slots = self.names.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.insert(
            self.name.clone(),
            Slot::Held {
                id: self.id.clone(),
            },
        );
        let failure = self.failure.take().unwrap_or_else(|| {
            (
                tonic::Code::Internal,
                format!("creation of {} failed", self.id),
            )
        });
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Some(Err(failure)));
        }
    }

    /// The object exists: the name stays held and waiting retries get its id.
    pub fn commit(mut self) {
        let mut slots = self.names.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.insert(
            self.name.clone(),
            Slot::Held {
                id: self.id.clone(),
            },
        );
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Some(Ok(self.id.clone())));
        }
    }
}

impl Drop for NameGuard {
    fn drop(&mut self) {
        let Some(tx) = self.tx.take() else { return };
        let mut slots = self.names.slots.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(slots.get(&self.name), Some(Slot::Pending { id, .. }) if *id == self.id) {
            slots.remove(&self.name);
        }
        let failure = self.failure.take().unwrap_or_else(|| {
            (
                tonic::Code::FailedPrecondition,
                format!("creation of {} was abandoned", self.id),
            )
        });
        let _ = tx.send(Some(Err(failure)));
    }
}

/// Waits for the outcome of an in-flight create call.
pub async fn wait(mut done: watch::Receiver<Option<Outcome>>) -> Outcome {
    loop {
        if let Some(o) = done.borrow_and_update().clone() {
            return o;
        }
        if done.changed().await.is_err() {
            // The sender is gone without a word: only possible if the guard was
            // leaked; report what a retry can act on.
            return Err((
                tonic::Code::FailedPrecondition,
                "the first call ended without an outcome".into(),
            ));
        }
    }
}

/// Turns an outcome's error back into the shim's error, keeping its gRPC code.
pub fn outcome_error((code, message): (tonic::Code, String)) -> Error {
    Error::Status { code, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_committed_name_is_taken_by_its_holder_until_released() {
        let n = Names::default();
        let Reservation::Fresh(g) = n.reserve("web_default_u_0", "id1") else {
            panic!("fresh name not reserved")
        };
        g.commit();
        match n.reserve("web_default_u_0", "id2") {
            Reservation::Taken { id } => assert_eq!(id, "id1"),
            _ => panic!("duplicate name not refused"),
        }
        n.release("web_default_u_0", "id2"); // not the holder: no effect
        assert_eq!(n.holder("web_default_u_0").as_deref(), Some("id1"));
        n.release("web_default_u_0", "id1");
        assert!(matches!(
            n.reserve("web_default_u_0", "id3"),
            Reservation::Fresh(_)
        ));
    }

    #[tokio::test]
    async fn a_failed_call_that_leaves_an_object_keeps_the_name_for_it() {
        let n = Names::default();
        let Reservation::Fresh(mut g) = n.reserve("a", "id1") else {
            panic!()
        };
        let Reservation::InFlight { done, .. } = n.reserve("a", "id2") else {
            panic!()
        };
        g.fail(&Error::Runtime("umount failed".into()));
        g.keep_failed();
        assert_eq!(wait(done).await.unwrap_err().0, tonic::Code::Internal);
        assert!(matches!(n.reserve("a", "id3"), Reservation::Taken { id } if id == "id1"));
    }

    #[tokio::test]
    async fn a_retry_during_the_first_call_gets_its_id() {
        let n = Names::default();
        let Reservation::Fresh(g) = n.reserve("a", "id1") else {
            panic!()
        };
        let Reservation::InFlight { id, done } = n.reserve("a", "id2") else {
            panic!("second call did not see the first in flight")
        };
        assert_eq!(id, "id1");
        let waiter = tokio::spawn(wait(done));
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        g.commit();
        assert_eq!(waiter.await.unwrap(), Ok("id1".to_string()));
    }

    #[tokio::test]
    async fn a_retry_during_a_failing_first_call_gets_its_error_and_the_name_is_free() {
        let n = Names::default();
        let Reservation::Fresh(mut g) = n.reserve("a", "id1") else {
            panic!()
        };
        let Reservation::InFlight { done, .. } = n.reserve("a", "id2") else {
            panic!()
        };
        g.fail(&Error::NotFound("image \"x\" not found".into()));
        drop(g);
        let (code, msg) = wait(done).await.unwrap_err();
        assert_eq!(code, tonic::Code::NotFound);
        assert!(msg.contains("image"));
        assert_eq!(outcome_error((code, msg)).code(), tonic::Code::NotFound);
        assert!(n.holder("a").is_none());
        assert!(matches!(n.reserve("a", "id3"), Reservation::Fresh(_)));
    }
}

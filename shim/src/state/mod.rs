//! What berthd knows about pod sandboxes and containers: persisted records, their
//! lifecycle state machines, the in-memory index with one lock per object, and
//! the name reservations that make a kubelet retry safe.
//!
//! Pod sandbox:
//! ```text
//!   RunPodSandbox ──> Creating ──(all steps done)──> Ready ──StopPodSandbox──> NotReady ──RemovePodSandbox──> (gone)
//!                        └──(a step failed: rolled back)──> (gone)
//! ```
//! Container:
//! ```text
//!   CreateContainer ──> Creating ──> Created ──StartContainer──> Running ──(exit / StopContainer)──> Exited
//!                          │            └─────────StopContainer / pod stopped──────────────────────────┘
//!                          ├──(failed: rolled back)──> (gone)          any state but Creating ──RemoveContainer──> (gone)
//!                          └──(failed, undo incomplete)──> Unknown (kept so RemoveContainer finishes the cleanup)
//! ```
//! A container whose runtime state vanished (node reboot) or whose monitor died
//! without recording the exit becomes Exited with reason `Unknown` and exit code 255.
//! A pod whose failed creation could not be fully undone is kept NotReady.
//! Invariants: a record is written to the store before the RPC that changed it
//! reports success (update-then-persist, under the object's operation lock); a
//! record still `Creating` after a restart belongs to a call that died half-way
//! and is rolled back by recovery; every record carries [`RECORD_VERSION`] and
//! loading refuses any other.

mod container;
mod filter;
mod names;
mod objects;
mod pod;
mod proto_bytes;

pub use container::{signal_to_cri, ContainerRecord, ContainerState, ProcessUser};
pub use filter::{id_matches, labels_match};
pub use names::{outcome_error, wait as wait_outcome, NameGuard, Names, Outcome, Reservation};
pub use objects::{Entry, Listed, Listing, Objects, OpGuard, ReplyCache};
pub use pod::{PodNamespacePaths, PodRecord, PodResources, PodState};

use crate::error::{Error, Result};

/// Version of the pod and container records; a record of another version is refused.
pub const RECORD_VERSION: u32 = 1;
/// Store table of [`PodRecord`]s keyed by pod id.
pub const PODS_TABLE: &str = "pods";
/// Store table of [`ContainerRecord`]s keyed by container id.
pub const CONTAINERS_TABLE: &str = "containers";

/// Checks the version of a record read back from the store.
pub fn check_version(table: &str, id: &str, version: u32) -> Result<()> {
    if version == RECORD_VERSION {
        Ok(())
    } else {
        Err(Error::Store(format!(
            "{table}/{id}: record version {version} is not {RECORD_VERSION}, the version this berthd reads"
        )))
    }
}

/// A fresh random object id: 64 lower-case hex digits, as kubelet and crictl expect.
pub fn new_id() -> Result<String> {
    use std::io::Read;
    let mut buf = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(Error::io("read random id", "/dev/urandom"))?;
    Ok(hex::encode(buf))
}

/// Now, in Unix nanoseconds (the unit of every CRI timestamp).
pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_hex_and_distinct() {
        let a = new_id().unwrap();
        let b = new_id().unwrap();
        assert_eq!(a.len(), 64);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }

    #[test]
    fn other_record_versions_are_refused_naming_the_record() {
        check_version(PODS_TABLE, "p1", RECORD_VERSION).unwrap();
        let e = check_version(PODS_TABLE, "p1", RECORD_VERSION + 1).unwrap_err();
        assert!(e.to_string().contains("pods/p1"), "{e}");
    }
}

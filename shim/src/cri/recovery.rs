//! Start-up recovery, before berthd answers any RPC: reload every pod and
//! container record, fold in what happened while berthd was down (exits the
//! monitors recorded, runtime state lost to a reboot), and roll back objects a
//! crashed call left `Creating`. Namespace pins and monitors outlive berthd, so
//! nothing is re-created. A record that cannot be read is logged and left in
//! the store untouched rather than deleted.

use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::container_exit::{observe, Observed};
use super::container_runtime::Lifecycle;
use super::sandbox_run::{remove_dir_if_exists, unmount};
use crate::error::Result;
use crate::state::{check_version, ContainerRecord, ContainerState, PodRecord, PodState};

/// What recovery found, for the log line and for tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Recovered {
    pub pods: usize,
    pub containers: usize,
    pub exited_while_down: usize,
    pub rolled_back: usize,
    pub unreadable: usize,
}

impl Lifecycle {
    /// Rebuilds the in-memory state from the store and the runtime.
    pub(crate) fn recover(self: &Arc<Self>) -> Result<Recovered> {
        let mut out = Recovered::default();
        for (id, rec) in self.load::<PodRecord>(self.pods.table(), &mut out)? {
            if let Err(e) = check_version(self.pods.table(), &id, rec.version) {
                tracing::error!(error = %e, "skipping pod sandbox record");
                out.unreadable += 1;
                continue;
            }
            if rec.state == PodState::Creating {
                tracing::warn!(pod_sandbox_id = %id, "rolling back pod sandbox left half-created");
                match self.roll_back_pod(&rec) {
                    Ok(()) => out.rolled_back += 1,
                    Err(e) => {
                        tracing::error!(pod_sandbox_id = %id, error = %e, "rollback failed; will retry at next start");
                        out.unreadable += 1;
                    }
                }
                continue;
            }
            let mut rec = rec;
            if rec.state == PodState::Ready && !pins_present(&rec) {
                // The pins are gone (node rebooted): the pod cannot run containers.
                tracing::warn!(pod_sandbox_id = %id, "pod sandbox namespaces are gone; marking it not ready");
                rec.state = PodState::NotReady;
                self.store.put(self.pods.table(), &id, &rec)?;
            }
            self.pod_names.hold(&rec.name, &id);
            self.pods.insert_loaded(&id, rec);
            out.pods += 1;
        }
        for (id, rec) in self.load::<ContainerRecord>(self.containers.table(), &mut out)? {
            if let Err(e) = check_version(self.containers.table(), &id, rec.version) {
                tracing::error!(error = %e, "skipping container record");
                out.unreadable += 1;
                continue;
            }
            let mut rec = rec;
            match rec.state {
                ContainerState::Creating => {
                    tracing::warn!(container_id = %id, "rolling back container left half-created");
                    match self.roll_back_container(&rec) {
                        Ok(()) => out.rolled_back += 1,
                        Err(e) => {
                            tracing::error!(container_id = %id, error = %e, "rollback failed; will retry at next start");
                            out.unreadable += 1;
                        }
                    }
                    continue;
                }
                ContainerState::Created | ContainerState::Running => {
                    let before = rec.clone();
                    match observe(&rec.state_dir) {
                        Observed::Created => {}
                        Observed::Running { started_at } => {
                            rec.state = ContainerState::Running;
                            if rec.started_at == 0 {
                                rec.started_at = started_at;
                            }
                        }
                        Observed::Exited {
                            code,
                            finished_at,
                            oom_killed,
                        } => {
                            rec.set_exited(code, finished_at, oom_killed);
                            out.exited_while_down += 1;
                        }
                        Observed::Lost(msg) => {
                            rec.set_exit_unknown(&msg);
                            out.exited_while_down += 1;
                        }
                    }
                    if rec != before {
                        self.store.put(self.containers.table(), &id, &rec)?;
                    }
                }
                ContainerState::Exited | ContainerState::Unknown => {}
            }
            if self.pods.get(&rec.pod_id).is_none() {
                tracing::warn!(container_id = %id, pod_sandbox_id = %rec.pod_id, "container of an unknown pod sandbox");
            }
            self.container_names.hold(&rec.name, &id);
            self.containers.insert_loaded(&id, rec);
            out.containers += 1;
        }
        tracing::info!(?out, "recovered pod sandboxes and containers");
        Ok(out)
    }

    /// Every record of `table` as JSON; undecodable ones are counted and skipped.
    fn load<R: DeserializeOwned>(
        &self,
        table: &str,
        out: &mut Recovered,
    ) -> Result<Vec<(String, R)>> {
        let raw: Vec<(String, serde_json::Value)> = self.store.list(table)?;
        let mut recs = Vec::with_capacity(raw.len());
        for (id, v) in raw {
            match serde_json::from_value(v) {
                Ok(r) => recs.push((id, r)),
                Err(e) => {
                    tracing::error!(table, id, error = %e, "skipping unreadable record");
                    out.unreadable += 1;
                }
            }
        }
        Ok(recs)
    }

    fn roll_back_pod(&self, rec: &PodRecord) -> Result<()> {
        if let Some(dir) = &rec.ns_dir {
            berth_runtime::unpin_namespaces(dir)
                .map_err(super::container_runtime::runtime_error)?;
        }
        unmount(&rec.pod_dir.join("shm"))?;
        remove_dir_if_exists(&rec.pod_dir)?;
        self.store.delete(self.pods.table(), &rec.id)?;
        Ok(())
    }

    fn roll_back_container(&self, rec: &ContainerRecord) -> Result<()> {
        berth_runtime::delete_dir(&rec.state_dir, true)
            .map_err(super::container_runtime::runtime_error)?;
        self.images.release_rootfs(&rec.id)?;
        remove_dir_if_exists(&rec.bundle)?;
        self.store.delete(self.containers.table(), &rec.id)?;
        Ok(())
    }
}

/// Whether every namespace pin the pod had is still there.
fn pins_present(rec: &PodRecord) -> bool {
    [
        &rec.namespaces.net,
        &rec.namespaces.ipc,
        &rec.namespaces.uts,
    ]
    .into_iter()
    .flatten()
    .all(|p| p.exists())
}

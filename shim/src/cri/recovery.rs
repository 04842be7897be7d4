//! Start-up recovery, before berthd answers any RPC: reload every pod and
//! container record, fold in what happened while berthd was down (exits the
//! monitors recorded, runtime state lost to a reboot), and roll back objects a
//! crashed call left `Creating`. Namespace pins and monitors outlive berthd, so
//! nothing is re-created. A pod left `Creating` may have been given an address
//! by a CNI ADD that berthd did not live to see finish: its rollback runs CNI
//! DEL (idempotent, fine when ADD never ran) before the namespace pins go, or
//! host-local IPAM would keep that address reserved forever. A record that cannot be read is logged and left in
//! the store untouched rather than deleted.

use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::lifecycle::{remove_dir_if_exists, unmount};
use super::lifecycle::{Lifecycle, Observed};
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
    pub(crate) async fn recover(self: &Arc<Self>) -> Result<Recovered> {
        let mut out = Recovered::default();
        for (id, rec) in self.load::<PodRecord>(self.pods.table(), &mut out)? {
            if let Err(e) = check_version(self.pods.table(), &id, rec.version) {
                tracing::error!(error = %e, "skipping pod sandbox record");
                out.unreadable += 1;
                continue;
            }
            if rec.state == PodState::Creating {
                tracing::warn!(pod_sandbox_id = %id, "rolling back pod sandbox left half-created");
                match self.roll_back_pod(&rec).await {
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
                    match self.runtime.observe(&rec.state_dir) {
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

    async fn roll_back_pod(&self, rec: &PodRecord) -> Result<()> {
        // Before the unpin: DEL wants the namespace to remove the interface
        // too (it also works without one, releasing the address only).
        self.network_teardown(&rec.id, &rec.config, rec.namespaces.net.as_deref())
            .await?;
        if let Some(dir) = &rec.ns_dir {
            berth_runtime::unpin_namespaces(dir).map_err(super::lifecycle::runtime_error)?;
        }
        unmount(&rec.pod_dir.join("shm"))?;
        remove_dir_if_exists(&rec.pod_dir)?;
        self.store.delete(self.pods.table(), &rec.id)?;
        Ok(())
    }

    fn roll_back_container(&self, rec: &ContainerRecord) -> Result<()> {
        self.runtime.delete(&rec.state_dir)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::image::ImageService;
    use crate::state::{PodNamespacePaths, RECORD_VERSION};
    use crate::store::Store;
    use berth_proto::v1::PodSandboxConfig;

    fn lifecycle(dir: &std::path::Path) -> Arc<Lifecycle> {
        let config = Config {
            root: dir.join("root"),
            state_dir: dir.join("state"),
            ..Config::default()
        };
        let store = Arc::new(Store::open(&config.root.join("meta.redb")).unwrap());
        let images =
            Arc::new(ImageService::open(&config.root, store.clone(), Default::default()).unwrap());
        Arc::new(Lifecycle::new(Arc::new(config), store, images))
    }

    fn pod(lc: &Lifecycle, id: &str, state: PodState) -> PodRecord {
        PodRecord {
            version: RECORD_VERSION,
            id: id.into(),
            name: format!("{id}_ns_uid_0"),
            config: PodSandboxConfig::default(),
            runtime_handler: String::new(),
            state,
            created_at: 1,
            pod_dir: lc.pod_dir(id),
            ns_dir: None,
            namespaces: PodNamespacePaths::default(),
            cgroup_parent: "/berth".into(),
            ips: None,
            resources: None,
            stopped_cleanly: false,
        }
    }

    fn container(lc: &Lifecycle, id: &str, pod: &str, state: ContainerState) -> ContainerRecord {
        crate::cri::lifecycle::fake::container_record(lc, id, pod, state)
    }

    #[tokio::test]
    async fn half_created_objects_are_rolled_back_and_lost_containers_marked_exited() {
        let dir = tempfile::tempdir().unwrap();
        {
            let lc = lifecycle(dir.path());
            let s = &lc.store;
            let ready = pod(&lc, "p1", PodState::NotReady);
            let creating = pod(&lc, "p2", PodState::Creating);
            std::fs::create_dir_all(&creating.pod_dir).unwrap();
            std::fs::write(creating.pod_dir.join("hosts"), "x").unwrap();
            s.put(PODS_TABLE_NAME, "p1", &ready).unwrap();
            s.put(PODS_TABLE_NAME, "p2", &creating).unwrap();
            let half = container(&lc, "c1", "p1", ContainerState::Creating);
            std::fs::create_dir_all(&half.bundle).unwrap();
            std::fs::write(half.bundle.join("config.json"), "{}").unwrap();
            s.put(CONTAINERS_TABLE_NAME, "c1", &half).unwrap();
            // Running when berthd went down, but its runtime state is gone.
            s.put(
                CONTAINERS_TABLE_NAME,
                "c2",
                &container(&lc, "c2", "p1", ContainerState::Running),
            )
            .unwrap();
            let mut future = container(&lc, "c3", "p1", ContainerState::Exited);
            future.version = RECORD_VERSION + 1;
            s.put(CONTAINERS_TABLE_NAME, "c3", &future).unwrap();
        }
        let lc = lifecycle(dir.path());
        let got = lc.recover().await.unwrap();
        assert_eq!(
            got,
            Recovered {
                pods: 1,
                containers: 1,
                exited_while_down: 1,
                rolled_back: 2,
                unreadable: 1,
            }
        );
        assert!(lc.pods.get("p2").is_none());
        assert!(lc
            .store
            .get::<PodRecord>(PODS_TABLE_NAME, "p2")
            .unwrap()
            .is_none());
        assert!(!lc.pod_dir("p2").exists());
        assert!(lc.containers.get("c1").is_none());
        assert!(!lc.bundle_dir("c1").exists());
        let c2 = lc.containers.get("c2").unwrap().get();
        assert_eq!(
            (c2.state, c2.reason.as_str(), c2.exit_code),
            (ContainerState::Exited, "Unknown", 255)
        );
        let stored: ContainerRecord = lc.store.get(CONTAINERS_TABLE_NAME, "c2").unwrap().unwrap();
        assert_eq!(
            stored.state,
            ContainerState::Exited,
            "the fold is persisted"
        );
        // The record of another version stays in the store, untouched.
        assert!(lc.containers.get("c3").is_none());
        assert!(lc
            .store
            .get::<serde_json::Value>(CONTAINERS_TABLE_NAME, "c3")
            .unwrap()
            .is_some());
        // Names of recovered objects are held again.
        assert_eq!(lc.pod_names.holder("p1_ns_uid_0").as_deref(), Some("p1"));
        assert_eq!(
            lc.container_names.holder("c2_p1_ns_uid_0").as_deref(),
            Some("c2")
        );
        assert!(lc.container_names.holder("c1_p1_ns_uid_0").is_none());
    }

    const PODS_TABLE_NAME: &str = crate::state::PODS_TABLE;
    const CONTAINERS_TABLE_NAME: &str = crate::state::CONTAINERS_TABLE;
}

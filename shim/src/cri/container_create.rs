//! CreateContainer: resolve the (already pulled) image, mount the container's
//! rootfs, translate the request into an OCI spec, write the bundle and have
//! `berth-monitor create` make the init, which then waits for StartContainer.
//! Each step pushes its undo; a failure leaves nothing behind.

use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use berth_proto::v1::{
    ContainerConfig, ContainerEventType, CreateContainerRequest, CreateContainerResponse,
    NamespaceMode,
};
use berth_runtime::container::create::CreateOptions;
use berth_runtime::monitor::command::{MonitorCommand, DEFAULT_CGROUP_ROOT};
use berth_runtime::security::SecurityOptions;

use super::lifecycle::remove_dir_if_exists;
use super::lifecycle::{blocking, detached, settle, Lifecycle, Rollback};
use super::CriService;
use crate::error::{Error, Result};
use crate::spec::{self, PodFiles, PodNamespaces, SpecInput};
use crate::state::{
    new_id, now_nanos, outcome_error, wait_outcome, ContainerRecord, ContainerState, PodRecord,
    ProcessUser, Reservation, RECORD_VERSION,
};

impl CriService {
    pub(crate) async fn create_container(
        &self,
        req: CreateContainerRequest,
    ) -> Result<CreateContainerResponse> {
        let lc = self.lifecycle.clone();
        let id = detached(async move { lc.create_container(req).await }).await?;
        Ok(CreateContainerResponse { container_id: id })
    }
}

impl Lifecycle {
    async fn create_container(self: Arc<Self>, req: CreateContainerRequest) -> Result<String> {
        let config = req
            .config
            .ok_or_else(|| Error::InvalidArgument("config: missing".into()))?;
        validate(&config)?;
        if req.pod_sandbox_id.is_empty() {
            return Err(Error::InvalidArgument("pod_sandbox_id: empty".into()));
        }
        let (pod_id, pod_entry) = self.pods.must_find(&req.pod_sandbox_id)?;
        warm_cgroup_attach();
        let pod_md = pod_entry.get().metadata();
        let md = config.metadata.clone().unwrap_or_default();
        let name = ContainerRecord::reservation_name(&md, &pod_md);
        let id = new_id()?;
        // The name first, the pod lock second: a kubelet retry must find the
        // first call in flight, not queue behind it on the pod.
        let guard = match self.container_names.reserve(&name, &id) {
            Reservation::Fresh(g) => g,
            Reservation::InFlight { done, .. } => {
                return wait_outcome(done).await.map_err(outcome_error);
            }
            Reservation::Taken { id } => {
                return Err(Error::AlreadyExists(format!(
                    "container name {name:?} is already used by container {id}"
                )))
            }
        };
        // From here on everything the RPC logs (rollback and CNI failures
        // included) names the new container.
        tracing::Span::current().record("container_id", id.as_str());
        // Held for the whole create, so StopPodSandbox cannot miss a container
        // that is half-way made.
        let pod_op = pod_entry.lock().await;
        let pod = pod_entry.get();
        let result = if self.pods.get(&pod_id).is_none() {
            Err((
                Error::NotFound(format!("pod sandbox {pod_id:?} not found")),
                true,
            ))
        } else if !pod.state.can_create_container() {
            Err((
                Error::FailedPrecondition(format!(
                    "pod sandbox {pod_id} is not ready: cannot create containers in it"
                )),
                true,
            ))
        } else {
            let mut rollback = Rollback::default();
            match self
                .make_container(&id, &name, &pod, config, &mut rollback)
                .await
            {
                Ok(rec) => {
                    rollback.disarm();
                    Ok(rec)
                }
                Err(e) => {
                    let clean = rollback.run().await;
                    Err((e, clean))
                }
            }
        };
        drop(pod_op);
        let (outcome, created) = match result {
            Ok(rec) => (Ok(()), Some(rec)),
            Err(failed) => (Err(failed), None),
        };
        settle(&self.containers, &self.store, guard, outcome, |r, e| {
            r.state = ContainerState::Unknown;
            r.message = format!("creation failed and could not be fully undone: {e}");
        })
        .await?;
        if let Some(rec) = created {
            tracing::info!(container_id = %id, pod_sandbox_id = %pod_id, name, "container created");
            self.emit(ContainerEventType::ContainerCreatedEvent, &rec);
        }
        Ok(id)
    }

    async fn make_container(
        self: &Arc<Self>,
        id: &str,
        name: &str,
        pod: &PodRecord,
        mut config: ContainerConfig,
        rollback: &mut Rollback,
    ) -> Result<ContainerRecord> {
        let volumes = spec::image_volume::plan(&mut config, |s| self.images.resolve(s))?;
        let image_name = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        let image = self.images.resolve(&image_name)?.ok_or_else(|| {
            Error::NotFound(format!(
                "config.image.image: image {image_name:?} not found; pull it first"
            ))
        })?;
        let stop_signal = spec::stop_signal(&image.config, &config)?;
        let log_path = log_path(&pod.config.log_directory, &config.log_path)?;
        let bundle = self.bundle_dir(id);
        let state_dir = self.container_state_dir(id);
        let rec = ContainerRecord {
            version: RECORD_VERSION,
            id: id.to_string(),
            pod_id: pod.id.clone(),
            name: name.to_string(),
            config: config.clone(),
            state: ContainerState::Creating,
            created_at: now_nanos(),
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            image_id: image.id.clone(),
            image_ref: image
                .repo_digests
                .first()
                .cloned()
                .unwrap_or_else(|| image.id.clone()),
            stop_signal,
            bundle: bundle.clone(),
            state_dir: state_dir.clone(),
            log_path: log_path.clone(),
            pid: 0,
            user: None,
        };
        // Record first: recovery rolls back a `Creating` container after a crash.
        // The caller deletes it after a clean rollback.
        let entry = self.containers.insert(&self.store, id, rec)?;
        let op = entry.lock().await;
        {
            let b = bundle.clone();
            rollback.push(
                "remove bundle",
                move || async move { remove_dir_if_exists(&b) },
            );
        }
        let userns = pod.namespaces.user.clone();
        spec::userns::probe_mounts(&config.mounts, userns.as_deref())?;
        let root_ids = spec::userns::pod_maps(&pod.config)?.map(|m| spec::userns::root_ids(&m));
        let rootfs = {
            let images = self.images.clone();
            let (image_id, cid, ns) = (image.id.clone(), id.to_string(), userns.clone());
            blocking(move || {
                let mapped = ns.as_deref().zip(root_ids);
                images.prepare_rootfs_mapped(&image_id, &cid, mapped)
            })
            .await?
        };
        {
            let images = self.images.clone();
            let cid = id.to_string();
            rollback.push("release rootfs", move || async move {
                blocking(move || images.release_rootfs(&cid)).await
            });
        }

        let config = if volumes.is_empty() {
            config
        } else {
            // Unmounted by "release rootfs" above.
            let images = self.images.clone();
            let (cid, ns) = (id.to_string(), userns.clone());
            let mounted =
                blocking(move || images.mount_volumes(&cid, &volumes, ns.as_deref())).await?;
            spec::image_volume::bind_sources(config, &mounted)
        };
        let target_pid = self.target_pid(&config)?;
        let pod_namespaces = PodNamespaces {
            net: pod.namespaces.net.clone(),
            ipc: pod.namespaces.ipc.clone(),
            uts: pod.namespaces.uts.clone(),
            pid: pod.namespaces.pid.clone(),
            user: userns,
        };
        let shm = pod.pod_dir.join("shm");
        let pod_files = PodFiles {
            hostname: Some(pod.pod_dir.join("hostname")),
            hosts: Some(pod.pod_dir.join("hosts")),
            resolv_conf: Some(pod.pod_dir.join("resolv.conf")),
            shm: pod.namespaces.ipc.as_ref().map(|_| shm),
        };
        let oci = spec::container_spec(&SpecInput {
            container_id: id,
            sandbox_id: &pod.id,
            config: &config,
            sandbox: &pod.config,
            image: &image.config,
            rootfs: &rootfs,
            pod_namespaces: &pod_namespaces,
            target_pid,
            cgroup_parent: &pod.cgroup_parent,
            pod_files: &pod_files,
            restrict_oom_score_adj: self.config.restrict_oom_score_adj,
            drop_hugepage_limits: self.config.tolerate_missing_hugetlb_controller
                && !spec::host_has_hugetlb(),
        })?;
        let json = serde_json::to_vec_pretty(&oci)
            .map_err(|e| Error::Internal(format!("serialise oci spec: {e}")))?;
        let cfg_path = bundle.join("config.json");
        std::fs::write(&cfg_path, json).map_err(Error::io("write bundle config", &cfg_path))?;

        if let Some(p) = log_path.as_ref().and_then(|p| p.parent()) {
            std::fs::create_dir_all(p).map_err(Error::io("create log directory", p))?;
        }
        let create = MonitorCommand::Create {
            options: CreateOptions {
                id: id.to_string(),
                bundle: bundle.clone(),
                state_dir: state_dir.clone(),
                stdin: config.stdin,
                security: SecurityOptions {
                    restrict_oom_score_adj: self.config.restrict_oom_score_adj,
                },
                cgroup_root: DEFAULT_CGROUP_ROOT.into(),
                seccomp_cache: Some(self.seccomp_cache_dir()),
            },
            log_path: log_path.clone(),
        };
        {
            let (dir, rt) = (state_dir.clone(), self.runtime.clone());
            // Registered first: the monitor cleans up after a failed create, and
            // deleting a container that is not there is a no-op.
            rollback.push("delete runtime container", move || async move {
                blocking(move || rt.delete(&dir)).await
            });
        }
        let out = self.run_monitor(&create).await?;
        let pid: i32 = out.trim().parse().unwrap_or(0);
        let user = oci.process().as_ref().map(|p| {
            let u = p.user();
            ProcessUser {
                uid: i64::from(u.uid()),
                gid: i64::from(u.gid()),
                groups: u
                    .additional_gids()
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .map(i64::from)
                    .collect(),
            }
        });
        entry.update(&op, &self.store, self.containers.table(), id, |r| {
            r.state = ContainerState::Created;
            r.pid = pid;
            r.user = user;
        })
    }

    /// For `namespace_options.pid == TARGET`: the target container's init pid.
    fn target_pid(&self, config: &ContainerConfig) -> Result<Option<i32>> {
        let Some(ns) = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref())
        else {
            return Ok(None);
        };
        if ns.pid != NamespaceMode::Target as i32 {
            return Ok(None);
        }
        let (_, e) = self.containers.find(&ns.target_id)?.ok_or_else(|| {
            Error::NotFound(format!(
                "config.linux.security_context.namespace_options.target_id: container {:?} not found",
                ns.target_id
            ))
        })?;
        let t = e.get();
        if t.state != ContainerState::Running {
            return Err(Error::FailedPrecondition(format!(
                "config.linux.security_context.namespace_options.target_id: container {} is not running",
                t.id
            )));
        }
        Ok(Some(t.pid))
    }
}

/// Set while a [`warm_cgroup_attach`] task runs: one at a time is enough, the
/// creates in flight share its grace period.
static WARMING: AtomicBool = AtomicBool::new(false);

/// Starts taking the kernel's cgroup attach lock on a blocking thread, so that
/// the grace period the first attach after a quiet spell waits for (most of
/// `berth-monitor create`'s time) runs while this create does its own
/// durable writes, mounts the rootfs and starts the monitor. See
/// `berth_runtime::cgroups::warm_attach_lock`; it moves no process.
fn warm_cgroup_attach() {
    if WARMING.swap(true, Ordering::AcqRel) {
        return;
    }
    tokio::task::spawn_blocking(|| {
        berth_runtime::cgroups::warm_attach_lock(Path::new("/sys/fs/cgroup"));
        WARMING.store(false, Ordering::Release);
    });
}

fn validate(config: &ContainerConfig) -> Result<()> {
    let md = config
        .metadata
        .as_ref()
        .ok_or_else(|| Error::InvalidArgument("config.metadata: missing".into()))?;
    super::validate::container(config)?;
    if md.name.is_empty() {
        return Err(Error::InvalidArgument("config.metadata.name: empty".into()));
    }
    if md.name.contains(['/', '\0']) {
        return Err(Error::InvalidArgument(format!(
            "config.metadata.name: {:?} contains '/' or NUL",
            md.name
        )));
    }
    match &config.image {
        Some(i) if !i.image.trim().is_empty() => {}
        _ => return Err(Error::InvalidArgument("config.image.image: empty".into())),
    }
    Ok(())
}

/// The absolute log path: `log_directory/log_path`; `log_path` must stay inside.
fn log_path(log_directory: &str, rel: &str) -> Result<Option<PathBuf>> {
    if rel.is_empty() || log_directory.is_empty() {
        return Ok(None);
    }
    let p = Path::new(rel);
    if p.is_absolute() || p.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(Error::InvalidArgument(format!(
            "config.log_path: {rel:?} must be a relative path inside the pod's log directory"
        )));
    }
    Ok(Some(Path::new(log_directory).join(p)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{ContainerMetadata, ImageSpec};

    #[test]
    fn log_path_joins_under_the_pod_directory_only() {
        assert_eq!(
            log_path("/var/log/pods/x", "app/0.log").unwrap(),
            Some(PathBuf::from("/var/log/pods/x/app/0.log"))
        );
        assert_eq!(log_path("", "app/0.log").unwrap(), None);
        assert_eq!(log_path("/l", "").unwrap(), None);
        for bad in ["/etc/passwd", "../x.log", "a/../../x"] {
            let e = log_path("/l", bad).unwrap_err().to_string();
            assert!(e.starts_with("config.log_path"), "{bad}: {e}");
        }
    }

    #[test]
    fn malformed_configs_are_refused_naming_the_field() {
        let ok = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: "app".into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        validate(&ok).unwrap();
        let mut c = ok.clone();
        c.metadata = None;
        assert!(validate(&c)
            .unwrap_err()
            .to_string()
            .starts_with("config.metadata"));
        let mut c = ok.clone();
        c.metadata.as_mut().unwrap().name.clear();
        assert!(validate(&c)
            .unwrap_err()
            .to_string()
            .starts_with("config.metadata.name"));
        let mut c = ok;
        c.image = None;
        assert!(validate(&c)
            .unwrap_err()
            .to_string()
            .starts_with("config.image.image"));
    }
}

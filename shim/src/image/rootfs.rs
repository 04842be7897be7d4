//! Container root filesystems: an overlay of the image's snapshots with a
//! writable upper directory per container, and its release.

use super::*;

impl ImageService {
    /// Mounts container `container_id`'s rootfs (its image's snapshots under
    /// its own upper dir) at `containers/<id>/rootfs` and returns that path.
    /// Calling it again for a mounted rootfs returns the same path.
    pub fn prepare_rootfs(&self, image_id: &str, container_id: &str) -> Result<PathBuf> {
        self.prepare_rootfs_mapped(image_id, container_id, None)
    }

    /// [`ImageService::prepare_rootfs`] for a pod with its own user namespace
    /// (`crate::spec::userns`): the lower layers are id-mapped through it and
    /// the writable layer's root belongs to the pod's root (`root_ids`, host
    /// uid and gid), so nothing in the shared snapshots is copied or chowned.
    pub fn prepare_rootfs_mapped(
        &self,
        image_id: &str,
        container_id: &str,
        userns: Option<(&Path, (u32, u32))>,
    ) -> Result<PathBuf> {
        snapshot::validate_container_id(container_id)?;
        let inner = &self.inner;
        let _refs = inner.refs.lock().unwrap_or_else(|p| p.into_inner());
        let rec = self
            .resolve(image_id)?
            .ok_or_else(|| Error::NotFound(format!("image {image_id:?} not found")))?;
        let dir = inner.root.join("containers").join(container_id);
        let rootfs = dir.join("rootfs");
        if snapshot::is_mountpoint(&rootfs) {
            if store::get_ref(&inner.store, container_id)?.is_some_and(|r| r.image_id == rec.id) {
                return Ok(rootfs);
            }
            return Err(Error::AlreadyExists(format!(
                "container {container_id}: rootfs is already mounted from another image"
            )));
        }
        let mut lowers = Vec::new();
        for c in rec.chain_ids.iter().rev() {
            if !inner.snapshots.exists(c) {
                return Err(Error::FailedPrecondition(format!(
                    "image {}: snapshot {c} is missing; pull the image again",
                    rec.id
                )));
            }
            lowers.push(inner.snapshots.path(c)?);
        }
        let upper = dir.join("upper");
        let work = dir.join("work");
        let result = (|| {
            dirs::create_private(&dir)?;
            for d in [&upper, &work, &rootfs] {
                fs::create_dir_all(d).map_err(Error::io("create directory", d))?;
            }
            fs::set_permissions(&upper, fs::Permissions::from_mode(0o755))
                .map_err(Error::io("chmod", &upper))?;
            if lowers.is_empty() {
                // overlayfs needs a lower directory; a layerless image gets an empty one.
                let empty = dir.join("empty");
                fs::create_dir_all(&empty).map_err(Error::io("create directory", &empty))?;
                lowers.push(empty);
            }
            store::put_ref(
                &inner.store,
                container_id,
                &store::SnapshotRef {
                    image_id: rec.id.clone(),
                    chain_ids: rec.chain_ids.clone(),
                    ..Default::default()
                },
            )?;
            let volatile = inner.volatile_rootfs.load(Ordering::Relaxed);
            if let Some((ns, (uid, gid))) = userns {
                std::os::unix::fs::lchown(&upper, Some(uid), Some(gid))
                    .map_err(Error::io("chown", &upper))?;
                // Held until the overlay has taken its own copies of them.
                let layers = berth_runtime::idmap::idmapped_layers(&lowers, ns)?;
                let paths: Vec<PathBuf> = layers
                    .iter()
                    .map(berth_runtime::sys::inroot::fd_path)
                    .collect();
                return snapshot::mount_overlay(&paths, &upper, &work, &rootfs, volatile);
            }
            snapshot::mount_overlay(&lowers, &upper, &work, &rootfs, volatile)
        })();
        if let Err(e) = result {
            let _ = store::delete_ref(&inner.store, container_id);
            for d in [&upper, &work, &rootfs, &dir.join("empty")] {
                let _ = fs::remove_dir_all(d);
            }
            let _ = fs::remove_dir(&dir);
            return Err(e);
        }
        Ok(rootfs)
    }

    /// Whether container layers are mounted without syncs (config `volatile_rootfs`).
    pub fn set_volatile_rootfs(&self, on: bool) {
        self.inner.volatile_rootfs.store(on, Ordering::Relaxed);
    }

    /// Unmounts and deletes container `container_id`'s rootfs, writable layer
    /// and image volumes and drops its snapshot references. Idempotent.
    pub fn release_rootfs(&self, container_id: &str) -> Result<()> {
        snapshot::validate_container_id(container_id)?;
        let inner = &self.inner;
        {
            let _refs = inner.refs.lock().unwrap_or_else(|p| p.into_inner());
            let dir = inner.root.join("containers").join(container_id);
            let rootfs = dir.join("rootfs");
            volume::unmount_all(&dir)?;
            snapshot::unmount(&rootfs)?;
            match fs::remove_dir(&rootfs) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(Error::io("remove container rootfs", &rootfs)(e))
                }
                _ => {}
            }
            // What the container wrote can be large: deleted off the RPC path.
            for d in [&dir.join("upper"), &dir.join("work"), &dir.join("empty")] {
                inner.trash.stash(d)?;
            }
            // Other files (config.json) belong to the container's owner.
            let _ = fs::remove_dir(&dir);
            store::delete_ref(&inner.store, container_id)?;
        }
        // Its image may have been removed while it ran: collect, but never
        // on RemoveContainer's path.
        if inner.orphans.load(Ordering::SeqCst) || inner.gc_pending.load(Ordering::SeqCst) {
            Inner::request_gc(inner);
        } else {
            Inner::request_trash_emptying(inner);
        }
        Ok(())
    }
}

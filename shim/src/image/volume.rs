//! Image volumes: a pulled image's filesystem mounted read-only for one
//! container, made from the same shared snapshots as root filesystems and
//! never copied.
//!
//! berthd mounts each volume in its own mount namespace (where it mounts
//! container root filesystems too) at `containers/<id>/volumes/<n>`, `n`
//! being the mount's index in the request:
//! - several layers: an overlay with lower directories only, which is
//!   read-only by construction (there is nowhere to write);
//! - one layer: a read-only bind mount of its snapshot (overlayfs wants two
//!   lower directories when it has no upper one, on the kernels we support);
//! - no layer: an empty read-only tmpfs.
//!
//! `berth-monitor` then binds that directory, or the `image_sub_path` below
//! it, read-only into the container, as any bind mount of the spec. The sub
//! path is resolved by the kernel inside the mounted image (openat2 with
//! `RESOLVE_IN_ROOT`, the runtime's in-root resolver): `..` and absolute
//! symlinks stop at the image's root, as with containerd (`OpenInRoot`) and
//! CRI-O (securejoin), so no lookup leaves the image. The directory found is
//! named by the path read back from its descriptor; nothing below the
//! read-only mount can change (snapshots are immutable), so the bind made
//! later reaches that same directory.
//!
//! In use: the container's snapshot reference (`snapshot_refs`, see
//! [`super::store`]) lists its volumes. It is written before the mount and
//! deleted with it by `release_rootfs` (RemoveContainer, a failed create's
//! rollback, recovery of a half-made container), so it says exactly which
//! containers hold which images, survives restarts in `meta.redb`, and needs
//! no counter kept in step. Garbage collection keeps the snapshots it names;
//! RemoveImage of an image a container mounts is refused naming the
//! container. Both run under the lock mounts take.

use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use berth_runtime::sys::inroot;
use nix::mount::{mount, MsFlags};
use rustix::fs::OFlags;

use super::{snapshot, store, ImageService};
use crate::error::{Error, Result};
use crate::store::{dirs, Store};

/// One image volume to mount for a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRequest {
    /// Index of the mount in the request's `mounts`: names the field in
    /// errors and the volume's directory.
    pub index: usize,
    /// The image, by id (or any name [`ImageService::resolve`] takes).
    pub image_id: String,
    /// `image_sub_path`, relative and without `..` (checked by the caller);
    /// empty for the image's root.
    pub sub_path: String,
}

/// A mounted image volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountedVolume {
    /// Index of the mount in the request's `mounts`.
    pub index: usize,
    /// The directory to bind into the container: the volume's root or the
    /// resolved sub path inside it.
    pub source: PathBuf,
}

fn field(i: usize, f: &str) -> String {
    format!("config.mounts[{i}].{f}")
}

impl ImageService {
    /// Mounts the image volumes of container `container_id`, whose rootfs
    /// [`ImageService::prepare_rootfs`] made. On error nothing of them stays
    /// mounted or referenced; [`ImageService::release_rootfs`] unmounts them.
    ///
    /// `userns`: the pod's user namespace (pinned), for a pod with its own:
    /// the image's files are then id-mapped through it, as its rootfs layers
    /// are, so what root owns in the image the pod's root owns in the volume.
    pub fn mount_volumes(
        &self,
        container_id: &str,
        reqs: &[VolumeRequest],
        userns: Option<&Path>,
    ) -> Result<Vec<MountedVolume>> {
        if reqs.is_empty() {
            return Ok(Vec::new());
        }
        snapshot::validate_container_id(container_id)?;
        let inner = &self.inner;
        let _refs = inner.refs.lock().unwrap_or_else(|p| p.into_inner());
        let mut r = store::get_ref(&inner.store, container_id)?.ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "container {container_id}: image volumes need its rootfs prepared first"
            ))
        })?;
        let dir = inner.root.join("containers").join(container_id);
        let result = self.mount_each(&dir, container_id, &mut r, reqs, userns);
        if result.is_err() {
            if let Err(e) = unmount_all(&dir) {
                tracing::warn!(container_id, error = %e, "cannot unmount image volumes of a failed mount");
            }
            r.volumes.clear();
            if let Err(e) = store::put_ref(&inner.store, container_id, &r) {
                tracing::warn!(container_id, error = %e, "cannot drop image volume references");
            }
        }
        result
    }

    fn mount_each(
        &self,
        dir: &Path,
        container_id: &str,
        r: &mut store::SnapshotRef,
        reqs: &[VolumeRequest],
        userns: Option<&Path>,
    ) -> Result<Vec<MountedVolume>> {
        let inner = &self.inner;
        let volumes = dir.join("volumes");
        dirs::ensure(&volumes, dirs::PRIVATE)?;
        let mut out = Vec::with_capacity(reqs.len());
        for req in reqs {
            let rec = self.resolve(&req.image_id)?.ok_or_else(|| {
                Error::NotFound(format!(
                    "{}: image {:?} not found; pull it first",
                    field(req.index, "image.image"),
                    req.image_id
                ))
            })?;
            let mut lowers = Vec::with_capacity(rec.chain_ids.len());
            for c in rec.chain_ids.iter().rev() {
                if !inner.snapshots.exists(c) {
                    return Err(Error::FailedPrecondition(format!(
                        "{}: image {}: snapshot {c} is missing; pull the image again",
                        field(req.index, "image.image"),
                        rec.id
                    )));
                }
                lowers.push(inner.snapshots.path(c)?);
            }
            // Referenced before it is mounted: a collection never sees the
            // mount without the reference.
            r.volumes.retain(|v| v.index != req.index);
            r.volumes.push(store::VolumeRef {
                index: req.index,
                image_id: rec.id.clone(),
                chain_ids: rec.chain_ids.clone(),
            });
            store::put_ref(&inner.store, container_id, r)?;
            let target = volumes.join(req.index.to_string());
            dirs::ensure(&target, dirs::PRIVATE)?;
            mount_read_only(&lowers, &target, userns)?;
            let source = resolve_sub_path(&target, &req.sub_path)
                .map_err(|e| sub_path_error(req.index, &req.sub_path, &rec.id, e))?;
            tracing::debug!(container_id, index = req.index, image = %rec.id, source = %source.display(), "image volume mounted");
            out.push(MountedVolume {
                index: req.index,
                source,
            });
        }
        Ok(out)
    }
}

/// Refuses the removal of image `image_id` while a container mounts it.
/// Callers hold the image service's reference lock.
pub(super) fn refuse_if_mounted(store: &Store, image_id: &str) -> Result<()> {
    match store::volume_user(store, image_id)? {
        None => Ok(()),
        Some((cid, i)) => Err(Error::FailedPrecondition(format!(
            "image {image_id} is in use: container {cid} mounts it as an image volume \
             (mounts[{i}]); remove the container first"
        ))),
    }
}

/// Mounts the snapshots `lowers` (top first) read-only at `target`, their
/// owners id-mapped through the user namespace pinned at `userns` if given.
/// overlayfs cannot be id-mapped itself (the kernel answers `EINVAL`), so an
/// overlay is made of id-mapped layers, as a user-namespaced rootfs is; a
/// single layer's bind is replaced by an id-mapped copy of itself.
fn mount_read_only(lowers: &[PathBuf], target: &Path, userns: Option<&Path>) -> Result<()> {
    let err = |op: &'static str| {
        move |e: nix::errno::Errno| Error::Io {
            op,
            path: target.to_path_buf(),
            source: e.into(),
        }
    };
    match lowers {
        [] => mount(
            Some("tmpfs"),
            target,
            Some("tmpfs"),
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("mode=755"),
        )
        .map_err(err("mount empty image volume")),
        [only] => {
            mount(
                Some(only.as_path()),
                target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(err("bind image volume"))?;
            // A bind takes the flags of the mount it copies; read-only needs a
            // remount of the new one.
            mount(
                None::<&str>,
                target,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .map_err(|e| {
                let _ = snapshot::unmount(target);
                err("remount image volume read-only")(e)
            })?;
            if let Some(ns) = userns {
                // The copy keeps the read-only flag of the mount it clones.
                berth_runtime::idmap::idmap_mount_in_place(target, ns).map_err(|e| {
                    let _ = snapshot::unmount(target);
                    Error::from(e)
                })?;
            }
            Ok(())
        }
        _ => {
            // Held until the overlay has taken its own copies of them.
            let mapped = match userns {
                Some(ns) => berth_runtime::idmap::idmapped_layers(lowers, ns)?,
                None => Vec::new(),
            };
            let paths: Vec<PathBuf> = if mapped.is_empty() {
                lowers.to_vec()
            } else {
                mapped.iter().map(inroot::fd_path).collect()
            };
            let lower = paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(":");
            let opts = format!("lowerdir={lower}");
            // The kernel takes mount data up to one page.
            if opts.len() >= 4096 {
                return Err(Error::Unimplemented(format!(
                    "image volume {}: {} layers exceed the overlay mount option limit",
                    target.display(),
                    paths.len()
                )));
            }
            mount(
                Some("overlay"),
                target,
                Some("overlay"),
                MsFlags::MS_RDONLY,
                Some(opts.as_str()),
            )
            .map_err(err("mount image volume overlay"))
        }
    }
}

/// The directory `sub` names inside the image mounted at `target`, resolved
/// by the kernel with `target` as the root; `target` itself for "".
fn resolve_sub_path(target: &Path, sub: &str) -> io::Result<PathBuf> {
    if sub.is_empty() {
        return Ok(target.to_path_buf());
    }
    let root = inroot::open_root(target)?;
    // The real path of the root, in case the store's path has symlinks.
    let base = fs::read_link(inroot::fd_path(&root))?;
    let fd = inroot::open_in_root(
        root.as_fd(),
        Path::new(sub),
        OFlags::PATH | OFlags::DIRECTORY,
    )?;
    let found = fs::read_link(inroot::fd_path(&fd))?;
    if !found.starts_with(&base) {
        // RESOLVE_IN_ROOT never leaves the root; this guards the read-back.
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "resolves outside the image",
        ));
    }
    Ok(found)
}

fn sub_path_error(i: usize, sub: &str, image: &str, e: io::Error) -> Error {
    let f = field(i, "image_sub_path");
    match e.raw_os_error() {
        Some(libc::ENOENT) => {
            Error::NotFound(format!("{f}: {sub:?} does not exist in image {image}"))
        }
        Some(libc::ENOTDIR) => Error::InvalidArgument(format!(
            "{f}: {sub:?} in image {image} is not a directory (only directories can be mounted)"
        )),
        _ => Error::InvalidArgument(format!("{f}: {sub:?} in image {image}: {e}")),
    }
}

/// Unmounts and removes every image volume under the container directory
/// `dir`; missing or not mounted is fine. Callers hold the reference lock
/// (or own the container alone).
pub(super) fn unmount_all(dir: &Path) -> Result<()> {
    let volumes = dir.join("volumes");
    let entries = match fs::read_dir(&volumes) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("list image volumes", &volumes)(e)),
    };
    for e in entries {
        let p = e.map_err(Error::io("list image volumes", &volumes))?.path();
        snapshot::unmount(&p)?;
        match fs::remove_dir(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(Error::io("remove image volume directory", &p)(e))
            }
            _ => {}
        }
    }
    match fs::remove_dir(&volumes) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(Error::io("remove image volume directory", &volumes)(e))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_path_errors_name_the_field_with_the_code_the_kubelet_reads() {
        let e = sub_path_error(
            3,
            "x/y",
            "sha256:a",
            io::Error::from_raw_os_error(libc::ENOENT),
        );
        assert!(matches!(e, Error::NotFound(_)), "{e:?}");
        assert!(e
            .to_string()
            .starts_with("config.mounts[3].image_sub_path: \"x/y\""));
        let e = sub_path_error(
            0,
            "f",
            "sha256:a",
            io::Error::from_raw_os_error(libc::ENOTDIR),
        );
        assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
        assert!(e.to_string().contains("not a directory"), "{e}");
        let e = sub_path_error(
            0,
            "l",
            "sha256:a",
            io::Error::from_raw_os_error(libc::ELOOP),
        );
        assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    }

    #[test]
    fn unmounting_nothing_is_fine() {
        let d = tempfile::tempdir().unwrap();
        unmount_all(d.path()).unwrap();
        fs::create_dir_all(d.path().join("volumes/0")).unwrap();
        unmount_all(d.path()).unwrap();
        assert!(!d.path().join("volumes").exists());
    }

    #[test]
    fn in_use_images_are_named_with_their_container() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("meta.redb")).unwrap();
        refuse_if_mounted(&s, "sha256:v").unwrap();
        store::put_ref(
            &s,
            "c1",
            &store::SnapshotRef {
                image_id: "sha256:r".into(),
                chain_ids: vec![],
                volumes: vec![store::VolumeRef {
                    index: 1,
                    image_id: "sha256:v".into(),
                    chain_ids: vec![],
                }],
            },
        )
        .unwrap();
        let e = refuse_if_mounted(&s, "sha256:v").unwrap_err();
        assert!(matches!(e, Error::FailedPrecondition(_)), "{e:?}");
        assert!(e.to_string().contains("container c1") && e.to_string().contains("mounts[1]"));
        refuse_if_mounted(&s, "sha256:r").unwrap();
    }
}

//! User-namespace id maps and id-mapped mounts.
//!
//! A pod with its own user namespace (CRI `userns_options` mode POD) sees its
//! files through id-mapped mounts instead of chowned copies:
//!
//! - **The rootfs: each lower layer is id-mapped**, not the overlay
//!   ([`idmapped_layers`]). berthd clones every read-only snapshot dir of the
//!   image with `open_tree`, gives the clone the pod's user namespace with
//!   `mount_setattr(MOUNT_ATTR_IDMAP)`, and mounts the overlay on those clones
//!   (named `/proc/self/fd/N`; overlayfs keeps private copies, so the fds are
//!   closed right after). Why the layers and not the overlay: overlayfs
//!   itself refuses `MOUNT_ATTR_IDMAP` (`EINVAL` on this 6.18 kernel: it lacks
//!   `FS_ALLOW_IDMAP`), while it takes id-mapped layers. The snapshots are
//!   not touched, so pods with different maps share them on disk. The
//!   writable upper dir is not id-mapped: what the container writes lands on
//!   disk with its host ids (`N..N+65535`, like files the container would
//!   write anywhere), and only the upper dir's root is chowned to the pod's
//!   root so it can write there. The cost is one clone and one setattr per
//!   layer, a few syscalls however large the image.
//! - **Volumes with `uid_mappings`/`gid_mappings`**: the host dir is cloned and
//!   id-mapped with a user namespace holding exactly those maps (the pod's own
//!   namespace when the maps are the pod's, which is what a kubelet sends),
//!   then attached in the container ([`crate::sys::idmap::attach`]). A file
//!   owned by 0 on the host shows as the container's root, and what the
//!   container's root writes lands on the host owned by 0.
//!
//! Filesystems that cannot be id-mapped (proc, sysfs, …) fail
//! `mount_setattr` with `EINVAL`; [`probe`] lets the caller ask first.

use crate::error::{Error, Result};
use crate::sys::idmap as sys;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

/// One map line: `length` ids from `container_id` inside map to `host_id` outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    pub container_id: u32,
    pub host_id: u32,
    pub length: u32,
}

impl IdMap {
    /// Parses `inside:outside:length` (the `berth-monitor` argument form).
    pub fn parse(s: &str) -> Option<IdMap> {
        let mut it = s.split(':').map(|v| v.parse::<u32>().ok());
        let m = IdMap {
            container_id: it.next()??,
            host_id: it.next()??,
            length: it.next()??,
        };
        it.next().is_none().then_some(m)
    }

    /// The `inside:outside:length` form.
    pub fn arg(&self) -> String {
        format!("{}:{}:{}", self.container_id, self.host_id, self.length)
    }
}

/// The text of a `/proc/<pid>/uid_map` (or gid_map) file.
pub fn map_text(maps: &[IdMap]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.length))
        .collect()
}

/// Why a list of maps cannot be a user namespace's: empty, a zero length,
/// a range past `u32::MAX`, more than the kernel's 340 lines, or two ranges
/// overlapping inside or outside. `None` when it is fine.
pub fn check_maps(maps: &[IdMap]) -> Option<String> {
    if maps.is_empty() {
        return Some("no mappings".into());
    }
    if maps.len() > 340 {
        return Some(format!(
            "{} mappings, the kernel takes at most 340",
            maps.len()
        ));
    }
    let end = |start: u32, len: u32| u64::from(start) + u64::from(len);
    for (i, m) in maps.iter().enumerate() {
        if m.length == 0 {
            return Some(format!("[{i}]: length is 0"));
        }
        if end(m.container_id, m.length) > 1 << 32 || end(m.host_id, m.length) > 1 << 32 {
            return Some(format!("[{i}]: range {} overflows 32-bit ids", m.arg()));
        }
        for (j, o) in maps.iter().enumerate().take(i) {
            let overlap =
                |a: u32, b: u32| u64::from(a) < end(b, o.length) && u64::from(b) < end(a, m.length);
            if overlap(m.container_id, o.container_id) {
                return Some(format!(
                    "[{i}]: container ids {} overlap those of [{j}] {}",
                    m.arg(),
                    o.arg()
                ));
            }
            if overlap(m.host_id, o.host_id) {
                return Some(format!(
                    "[{i}]: host ids {} overlap those of [{j}] {}",
                    m.arg(),
                    o.arg()
                ));
            }
        }
    }
    None
}

/// The host id that `id` inside maps to, if any.
pub fn to_host(maps: &[IdMap], id: u32) -> Option<u32> {
    maps.iter().find_map(|m| {
        (id >= m.container_id && u64::from(id) < u64::from(m.container_id) + u64::from(m.length))
            .then(|| m.host_id + (id - m.container_id))
    })
}

fn open_userns(userns: &Path) -> Result<File> {
    File::open(userns).map_err(|e| Error::io(userns, e))
}

/// A detached, id-mapped copy of the mount tree at `source` (recursively with
/// `recursive`), owners shown through `userns`'s maps; attach it with
/// [`crate::sys::idmap::attach`] or drop it.
pub fn clone_idmapped(source: &Path, userns: &File, recursive: bool) -> std::io::Result<OwnedFd> {
    let fd = sys::open_tree_clone(source, recursive)?;
    sys::set_idmap(&fd, userns, recursive)?;
    Ok(fd)
}

/// Whether `source` can be id-mapped with the user namespace pinned at
/// `userns`: the same two calls as the real mount, on a copy that is dropped.
pub fn probe(source: &Path, userns: &Path) -> std::io::Result<()> {
    let ns = File::open(userns)?;
    clone_idmapped(source, &ns, false).map(drop)
}

/// Detached id-mapped copies of the layer directories `lowers`, through the
/// user namespace pinned at `userns`, for an overlay's `lowerdir`.
pub fn idmapped_layers(lowers: &[std::path::PathBuf], userns: &Path) -> Result<Vec<OwnedFd>> {
    let ns = open_userns(userns)?;
    lowers
        .iter()
        .map(|l| {
            clone_idmapped(l, &ns, false).map_err(|e| {
                Error::sys(
                    format!("id-map layer {} with {}", l.display(), userns.display()),
                    e,
                )
            })
        })
        .collect()
}

/// Replaces the mount at `path` (any bind-mountable tree) with an id-mapped copy of
/// itself, through the user namespace pinned at `userns`. Safe in a
/// multi-threaded process. If attaching the copy fails, `path` is left
/// unmounted (the caller releases the rootfs on any error).
pub fn idmap_mount_in_place(path: &Path, userns: &Path) -> Result<()> {
    let ns = open_userns(userns)?;
    let fd = clone_idmapped(path, &ns, false).map_err(|e| {
        Error::sys(
            format!("id-map {} with {}", path.display(), userns.display()),
            e,
        )
    })?;
    // The copy keeps the overlay's superblock alive; the original goes so a
    // single unmount of `path` releases everything.
    nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH)
        .map_err(|e| Error::sys(format!("detach {}", path.display()), e.into()))?;
    sys::attach(fd.as_raw_fd(), path).map_err(|e| {
        Error::sys(
            format!("attach the id-mapped copy on {}", path.display()),
            e,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(c: u32, h: u32, l: u32) -> IdMap {
        IdMap {
            container_id: c,
            host_id: h,
            length: l,
        }
    }

    #[test]
    fn maps_are_checked_for_emptiness_zero_length_overflow_and_overlap() {
        assert_eq!(check_maps(&[m(0, 65536, 65536)]), None);
        assert_eq!(
            check_maps(&[m(0, 65536, 1000), m(1000, 200000, 1000)]),
            None
        );
        assert!(check_maps(&[]).unwrap().contains("no mappings"));
        assert!(check_maps(&[m(0, 1, 0)]).unwrap().contains("length is 0"));
        assert!(check_maps(&[m(0, u32::MAX, 2)])
            .unwrap()
            .contains("overflows"));
        assert_eq!(check_maps(&[m(0, u32::MAX - 1, 2)]), None);
        assert!(check_maps(&[m(0, 65536, 100), m(50, 300000, 10)])
            .unwrap()
            .contains("container ids"));
        assert!(check_maps(&[m(0, 65536, 100), m(100, 65600, 10)])
            .unwrap()
            .contains("host ids"));
    }

    #[test]
    fn parse_and_host_lookup() {
        assert_eq!(IdMap::parse("0:65536:65536"), Some(m(0, 65536, 65536)));
        assert_eq!(IdMap::parse("0:1"), None);
        assert_eq!(IdMap::parse("0:1:2:3"), None);
        assert_eq!(IdMap::parse("a:1:2"), None);
        let maps = [m(0, 65536, 10), m(10, 1000, 5)];
        assert_eq!(to_host(&maps, 0), Some(65536));
        assert_eq!(to_host(&maps, 12), Some(1002));
        assert_eq!(to_host(&maps, 15), None);
        assert_eq!(map_text(&maps), "0 65536 10\n10 1000 5\n");
    }
}

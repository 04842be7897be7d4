//! A host directory that is a tmpfs mount of its own with a chosen
//! propagation (shared by default, as a kubelet's pod volume directories are
//! on a systemd host), holding the empty directories `inner` and `fromhost`
//! that the propagation tests mount on from each side. Unmounted on drop,
//! with whatever was propagated into it.
//!
//! This file needs only std, nix and tempfile: the runtime's tests compile it
//! in with `#[path]`, since they cannot depend on this crate.

use std::path::PathBuf;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// See the module doc.
#[derive(Debug)]
pub struct SharedDir {
    _tmp: tempfile::TempDir,
    /// The mount point.
    pub path: PathBuf,
}

impl SharedDir {
    /// A shared tmpfs mount.
    pub fn new() -> SharedDir {
        Self::with(MsFlags::MS_SHARED)
    }

    /// A tmpfs mount with propagation `prop` (`MS_SHARED`, `MS_PRIVATE`).
    pub fn with(prop: MsFlags) -> SharedDir {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("shared");
        std::fs::create_dir(&path).unwrap();
        mount(
            Some("tmpfs"),
            &path,
            Some("tmpfs"),
            MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        mount(None::<&str>, &path, None::<&str>, prop, None::<&str>).unwrap();
        for d in ["inner", "fromhost"] {
            std::fs::create_dir(path.join(d)).unwrap();
        }
        SharedDir { _tmp: tmp, path }
    }

    /// Whether `sub` (below the mount point) is a mount point in this
    /// process's mount namespace.
    pub fn is_mount_point(&self, sub: &str) -> bool {
        let want = self.path.join(sub).to_string_lossy().into_owned();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
    }
}

impl Default for SharedDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for SharedDir {
    fn drop(&mut self) {
        for sub in ["inner", "fromhost"] {
            while umount2(&self.path.join(sub), MntFlags::MNT_DETACH).is_ok() {}
        }
        let _ = umount2(&self.path, MntFlags::MNT_DETACH);
    }
}

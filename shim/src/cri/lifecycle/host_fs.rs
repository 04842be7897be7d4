//! The host-side mounts and directories of pods and containers, and their undo.

use std::path::Path;

use crate::error::{Error, Result};

/// Size of a pod's shared `/dev/shm` (Docker's and containerd's default).
const SHM_SIZE: &str = "size=65536k";

/// Mounts the pod's shared `/dev/shm` (a size-capped tmpfs) at `path`.
pub(crate) fn mount_shm(path: &Path) -> Result<()> {
    use nix::mount::{mount, MsFlags};
    std::fs::create_dir_all(path).map_err(Error::io("create pod shm", path))?;
    mount(
        Some("shm"),
        path,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(format!("mode=1777,{SHM_SIZE}").as_str()),
    )
    .map_err(|e| Error::io("mount pod shm", path)(e.into()))
}

/// Detaches whatever is mounted at `path` (all layers); nothing mounted is fine.
pub(crate) fn unmount(path: &Path) -> Result<()> {
    use nix::mount::{umount2, MntFlags};
    loop {
        match umount2(path, MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(Error::io("unmount", path)(e.into())),
        }
    }
}

/// Removes `dir` and everything in it; a missing directory is fine.
pub(crate) fn remove_dir_if_exists(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io("remove directory", dir)(e))
        }
        _ => Ok(()),
    }
}

//! Permissions of berthd's own directories.
//!
//! Image content holds setuid binaries and device nodes that no host user may
//! reach (containerd's CVE-2021-41103 class), and the state dirs hold sockets,
//! namespace pins and bundles with secrets in them. So `root` and `state_dir`
//! are 0711 (root can traverse; nobody else can list, and what is below is
//! private), and every directory below them is 0700. A container never walks
//! these paths as its own user: overlayfs checks the layers with the mounter's
//! (root's) credentials, and bind-mounted pod files are reached through the
//! mount, not through their parents.
//!
//! Directories are created with their mode (`mkdir(2)` with 0700 and the
//! umask can only take bits away), never created open and chmod'ed later, so
//! there is no window in which a new directory is reachable. A store made by
//! an older berthd, or a root directory made by hand, is tightened at start.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, Result};

/// `root` and `state_dir`: traversable by root only in practice (no other
/// user can list them, and every entry inside is private).
pub const TOP: u32 = 0o711;
/// Every directory below the top ones.
pub const PRIVATE: u32 = 0o700;
/// Files below the top directories that berthd creates itself (the database).
pub const PRIVATE_FILE: u32 = 0o600;

/// Creates `dir` (and missing parents) with `mode`, or tightens an existing
/// one to exactly `mode`. A symlink in its place is refused: the store must
/// not be redirected to a directory someone else controls.
pub fn ensure(dir: &Path, mode: u32) -> Result<()> {
    // 0700 under any umask stays within 0700; the execute bits of 0711 may be
    // masked away and are put back below (widening by x only, never r/w).
    match fs::DirBuilder::new()
        .recursive(true)
        .mode(mode & PRIVATE)
        .create(dir)
    {
        Ok(()) => {}
        Err(e) => return Err(Error::io("create directory", dir)(e)),
    }
    let m = fs::symlink_metadata(dir).map_err(Error::io("inspect directory", dir))?;
    if !m.is_dir() {
        return Err(Error::FailedPrecondition(format!(
            "{} must be a directory, not a symlink or file",
            dir.display()
        )));
    }
    if m.mode() & 0o7777 != mode {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode))
            .map_err(Error::io("set directory mode", dir))?;
    }
    Ok(())
}

/// Creates `dir` (and missing parents) as [`PRIVATE`] when it is missing;
/// an existing directory is left as it is (for directories that may be
/// shared, such as a socket's or a configured CNI cache's).
pub fn create_private(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE)
        .create(dir)
        .map_err(Error::io("create directory", dir))
}

/// Makes sure file `path` exists and is [`PRIVATE_FILE`]: created with that
/// mode, or tightened if it exists.
pub fn private_file(path: &Path) -> Result<()> {
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(PRIVATE_FILE)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(Error::io("create file", path))?;
    let m = fs::symlink_metadata(path).map_err(Error::io("inspect file", path))?;
    if m.mode() & 0o7777 != PRIVATE_FILE {
        fs::set_permissions(path, fs::Permissions::from_mode(PRIVATE_FILE))
            .map_err(Error::io("set file mode", path))?;
    }
    Ok(())
}

/// Tightens a store made before these rules (or by hand): `top` becomes
/// [`TOP`] and every directory directly inside it loses its group and other
/// bits (what is deeper is then unreachable for other users whatever its own
/// mode). Files directly inside keep their mode: the database is handled by
/// [`private_file`], and a socket's own mode is its access rule.
pub fn tighten(top: &Path) -> Result<()> {
    ensure(top, TOP)?;
    let rd = fs::read_dir(top).map_err(Error::io("list directory", top))?;
    for e in rd {
        let e = e.map_err(Error::io("list directory", top))?;
        let p = e.path();
        let Ok(m) = fs::symlink_metadata(&p) else {
            continue; // gone meanwhile
        };
        if m.is_dir() && m.mode() & 0o077 != 0 {
            fs::set_permissions(&p, fs::Permissions::from_mode(m.mode() & 0o7700))
                .map_err(Error::io("set directory mode", &p))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn directories_are_created_private_and_existing_ones_tightened() {
        let d = tempfile::tempdir().unwrap();
        let top = d.path().join("a/b");
        ensure(&top, TOP).unwrap();
        assert_eq!(mode(&top), TOP);
        assert_eq!(
            mode(&d.path().join("a")),
            PRIVATE,
            "parents are private too"
        );
        let sub = top.join("snapshots");
        fs::create_dir(&sub).unwrap();
        fs::set_permissions(&sub, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&top, fs::Permissions::from_mode(0o777)).unwrap();
        tighten(&top).unwrap();
        assert_eq!(mode(&top), TOP);
        assert_eq!(mode(&sub), PRIVATE);
        ensure(&sub, PRIVATE).unwrap();
        assert_eq!(mode(&sub), PRIVATE);

        let link = d.path().join("link");
        std::os::unix::fs::symlink(&sub, &link).unwrap();
        ensure(&link, PRIVATE).unwrap_err();

        let f = top.join("meta.redb");
        fs::write(&f, b"x").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        private_file(&f).unwrap();
        assert_eq!(mode(&f), PRIVATE_FILE);
        assert_eq!(
            fs::read(&f).unwrap(),
            b"x",
            "an existing file keeps its bytes"
        );
    }
}

//! Deleting in two steps: move into `<root>/trash/` now, delete later.
//!
//! Deleting an unpacked layer costs one unlink per file, seconds for a big
//! image; a rename costs one syscall whatever the size. So whatever has to go
//! (garbage snapshots and blobs, a half-unpacked layer of a refused pull, the
//! leftovers of a crash) is renamed into the trash directory where it is
//! invisible to the store at once, and the slow deletion runs later on a
//! background thread that holds no lock and never delays an RPC. The trash is
//! on the same filesystem as the store (it is a sibling of `snapshots/` and
//! `content/`); should a rename fail anyway, the entry is deleted in place.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::store::dirs;

/// The trash directory.
#[derive(Debug)]
pub struct Trash {
    dir: PathBuf,
    seq: AtomicU64,
}

impl Trash {
    /// Opens (creating it private) the trash at `dir`; what a crash left in
    /// it is deleted by the next [`Trash::empty`].
    pub fn open(dir: &Path) -> Result<Trash> {
        dirs::ensure(dir, dirs::PRIVATE)?;
        Ok(Trash {
            dir: dir.to_path_buf(),
            seq: AtomicU64::new(0),
        })
    }

    /// Moves `path` (a file or a directory tree) into the trash; missing is
    /// fine. Falls back to deleting it in place when it cannot be moved.
    pub fn stash(&self, path: &Path) -> Result<()> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Unique within this process; the pid keeps a restarted berthd from
        // colliding with what the previous one left.
        let dest = self.dir.join(format!(
            "{}-{}-{name}",
            std::process::id(),
            self.seq.fetch_add(1, Ordering::Relaxed)
        ));
        match fs::rename(path, &dest) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot move to trash; deleting in place");
                remove_any(path).map_err(Error::io("delete", path))
            }
        }
    }

    /// Whether anything waits for deletion.
    pub fn is_empty(&self) -> bool {
        fs::read_dir(&self.dir).map_or(true, |mut rd| rd.next().is_none())
    }

    /// Deletes everything in the trash. Slow; call it off every RPC's path.
    /// Failures are logged and left for the next call.
    pub fn empty(&self) {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if let Err(err) = remove_any(&p) {
                tracing::warn!(path = %p.display(), error = %err, "cannot empty trash entry");
            }
        }
    }
}

fn remove_any(p: &Path) -> io::Result<()> {
    let r = match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) => Err(e),
    };
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stashed_entries_vanish_at_once_and_are_deleted_later() {
        let d = tempfile::tempdir().unwrap();
        let t = Trash::open(&d.path().join("trash")).unwrap();
        let tree = d.path().join("snap");
        fs::create_dir_all(tree.join("a/b")).unwrap();
        fs::write(tree.join("a/b/f"), b"x").unwrap();
        let file = d.path().join("blob");
        fs::write(&file, b"y").unwrap();
        t.stash(&tree).unwrap();
        t.stash(&file).unwrap();
        t.stash(&d.path().join("missing")).unwrap();
        assert!(!tree.exists() && !file.exists());
        assert!(!t.is_empty());
        t.empty();
        assert!(t.is_empty());
    }
}

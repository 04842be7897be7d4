//! Disk use of the image store and the containers' writable layers
//! (ImageFsInfo).

use super::*;

/// Disk use of one directory tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirUsage {
    /// The directory measured (reported as the CRI mount point).
    pub mountpoint: PathBuf,
    /// Bytes allocated.
    pub used_bytes: u64,
    /// Inodes used.
    pub inodes_used: u64,
}

/// What ImageFsInfo reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsUsage {
    /// Content store and snapshots.
    pub images: DirUsage,
    /// Containers' writable layers.
    pub containers: DirUsage,
}

impl ImageService {
    /// Disk use of images and of containers' writable layers.
    pub fn fs_info(&self) -> Result<FsUsage> {
        let root = &self.inner.root;
        let mut seen = HashSet::new();
        let mut images = DirUsage {
            mountpoint: root.clone(),
            used_bytes: 0,
            inodes_used: 0,
        };
        for d in [root.join("content"), root.join("snapshots")] {
            du(&d, &mut seen, &mut images)?;
        }
        let cdir = root.join("containers");
        // kubelet treats differing mount points as a split image filesystem;
        // report the root when both live on the same filesystem.
        let same_fs = match (fs::metadata(root), fs::metadata(&cdir)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev(),
            _ => false,
        };
        let mut containers = DirUsage {
            mountpoint: if same_fs { root.clone() } else { cdir.clone() },
            used_bytes: 0,
            inodes_used: 0,
        };
        let mut seen = HashSet::new();
        for e in fs::read_dir(&cdir).map_err(Error::io("list containers", &cdir))? {
            let e = e.map_err(Error::io("list containers", &cdir))?;
            // Only the writable layers: rootfs is the overlay itself.
            for sub in ["upper", "work"] {
                du(&e.path().join(sub), &mut seen, &mut containers)?;
            }
        }
        Ok(FsUsage { images, containers })
    }
}

/// Adds the allocated bytes and inodes under `p` (not following symlinks,
/// not crossing mounts, counting hard-linked inodes once).
pub(super) fn du(p: &Path, seen: &mut HashSet<(u64, u64)>, acc: &mut DirUsage) -> Result<()> {
    let m = match fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("stat", p)(e)),
    };
    let dev = m.dev();
    let mut stack = vec![(p.to_path_buf(), m)];
    while let Some((path, m)) = stack.pop() {
        if m.dev() != dev || !seen.insert((m.dev(), m.ino())) {
            continue;
        }
        acc.used_bytes += m.blocks() * 512;
        acc.inodes_used += 1;
        if m.is_dir() {
            let rd = match fs::read_dir(&path) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("list directory", &path)(e)),
            };
            for e in rd.flatten() {
                if let Ok(cm) = e.metadata() {
                    stack.push((e.path(), cm));
                }
            }
        }
    }
    Ok(())
}

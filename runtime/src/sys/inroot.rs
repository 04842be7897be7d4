//! Path resolution inside a container's rootfs, done by the kernel.
//!
//! Every lookup goes through openat2(2) with `RESOLVE_IN_ROOT`: absolute
//! symlinks and `..` are clamped at the rootfs as if it were `/`, magic links
//! (`/proc/<pid>/root` and friends, once a procfs is mounted in the rootfs) are
//! refused, and a chain longer than the kernel's 40 links fails with `ELOOP`
//! instead of being handed back half-resolved. Callers get a file descriptor
//! and act on it (mount through [`fd_path`], read the open file), so a symlink
//! swapped after the lookup cannot redirect the operation out of the rootfs.
//!
//! Missing mount targets are created one component at a time: each is made in
//! a directory descriptor that itself came from an in-root lookup, and a
//! dangling symlink met on the way is followed by re-resolving its target in
//! the root (counted against the same 40-link limit).
//!
//! Why not the `pathrs` crate (libpathrs): it carries its own procfs
//! hardening and a userspace fallback resolver for kernels without openat2,
//! a large dependency for the two operations needed here (open in root,
//! create in root), which are a few safe `rustix` calls on the kernels Berth
//! supports (openat2 needs Linux 5.6). The shim, which forbids `unsafe`, uses
//! the same functions ([`read_in_root`]), so there is one resolver.

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};

/// The kernel's limit on symlinks followed in one lookup (`MAXSYMLINKS`).
pub const MAX_SYMLINKS: u32 = 40;

/// What to create when the path does not exist yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A directory, mode 0755 (before umask).
    Dir,
    /// An empty regular file, mode 0644 (before umask): a bind-mount target.
    File,
}

fn resolve_flags() -> ResolveFlags {
    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS
}

fn errno(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

/// Opens `root` itself as an `O_PATH` directory descriptor.
pub fn open_root(root: &Path) -> io::Result<OwnedFd> {
    rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno)
}

/// openat2(2) of `path` under `dirfd` with `how`; retries the `EAGAIN` the
/// kernel returns when a rename or mount raced a `..` lookup.
fn openat2(
    dirfd: BorrowedFd<'_>,
    path: &Path,
    flags: OFlags,
    how: ResolveFlags,
) -> io::Result<OwnedFd> {
    let path: &Path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(dirfd, path, flags | OFlags::CLOEXEC, Mode::empty(), how) {
            Err(Errno::AGAIN) if tries < 64 => tries += 1,
            r => return r.map_err(errno),
        }
    }
}

/// Opens `path` as seen from inside `root` (an open directory): symlinks and
/// `..` never leave it. `flags` are `O_*` flags such as `O_PATH` or `O_RDONLY`.
pub fn open_in_root(root: BorrowedFd<'_>, path: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    openat2(root, path, flags, resolve_flags())
}

/// `/proc/self/fd/<fd>`: a name for what `fd` refers to that mount(2),
/// mknod(2) and friends accept; the kernel follows it to the very inode the
/// descriptor holds, not to whatever the original path names now.
pub fn fd_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Opens `path` inside `root` for reading, refusing anything but a regular
/// file (an image's FIFO would block the reader, a device node never ends).
pub fn open_file_in_root(root: &Path, path: &Path) -> io::Result<File> {
    let dir = open_root(root)?;
    let fd = open_in_root(
        dir.as_fd(),
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY,
    )?;
    let file = File::from(fd);
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(file)
}

/// Reads at most `limit` bytes of the regular file `path` inside `root`.
pub fn read_in_root(root: &Path, path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    open_file_in_root(root, path)?
        .take(limit)
        .read_to_end(&mut out)?;
    Ok(out)
}

/// The last component of `path` when it names an entry (not `..`, not `/`).
fn entry_name(path: &Path) -> Option<&OsStr> {
    match path.components().next_back()? {
        Component::Normal(n) => Some(n),
        _ => None,
    }
}

/// Opens `path` inside `root` as an `O_PATH` descriptor, creating what is
/// missing: parent directories, then the last component as `kind`. Dangling
/// symlinks on the way are followed inside the root, as a lookup would.
pub fn create_in_root(root: BorrowedFd<'_>, path: &Path, kind: Kind) -> io::Result<OwnedFd> {
    let mut hops = 0;
    create_inner(root, path.to_path_buf(), kind, &mut hops)
}

fn create_inner(
    root: BorrowedFd<'_>,
    mut path: PathBuf,
    kind: Kind,
    hops: &mut u32,
) -> io::Result<OwnedFd> {
    loop {
        match open_in_root(root, &path, OFlags::PATH) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            r => return r,
        }
        let Some(parent) = path.parent().map(Path::to_path_buf) else {
            // The root itself is missing: nothing sensible to create.
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        };
        let dir = create_inner(root, parent.clone(), Kind::Dir, hops)?;
        let Some(name) = entry_name(&path).map(OsStr::to_os_string) else {
            // `x/..` with `x` now created: look again (bounded, in case the
            // directory keeps disappearing under us).
            *hops += 1;
            if *hops > MAX_SYMLINKS {
                return Err(io::Error::from_raw_os_error(libc::ELOOP));
            }
            continue;
        };
        let made = match kind {
            Kind::Dir => rustix::fs::mkdirat(&dir, &name, Mode::from_raw_mode(0o755)),
            Kind::File => rustix::fs::openat(
                &dir,
                &name,
                OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::WRONLY | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            )
            .map(drop),
        };
        match made {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(errno(e)),
        }
        match rustix::fs::readlinkat(&dir, &name, Vec::new()) {
            Ok(target) => {
                // A dangling symlink: its target, resolved in the root, is
                // what has to be created.
                *hops += 1;
                if *hops > MAX_SYMLINKS {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = PathBuf::from(<std::ffi::OsString as OsStringExt>::from_vec(
                    target.into_bytes(),
                ));
                path = parent.join(target);
                continue;
            }
            Err(Errno::INVAL) => {}
            // Removed again since: start over.
            Err(Errno::NOENT) => {
                *hops += 1;
                if *hops > MAX_SYMLINKS {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                continue;
            }
            Err(e) => return Err(errno(e)),
        }
        // Exactly the entry made (or found) in `dir`, no symlink followed.
        return openat2(
            dir.as_fd(),
            Path::new(&name),
            OFlags::PATH,
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn real(fd: &OwnedFd) -> PathBuf {
        std::fs::read_link(fd_path(fd)).unwrap()
    }

    #[test]
    fn lookups_stay_in_the_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("real")).unwrap();
        symlink("/real", root.join("abs")).unwrap();
        symlink("../../../../..", root.join("up")).unwrap();
        let dir = open_root(&root).unwrap();
        let fd = open_in_root(dir.as_fd(), Path::new("/abs/../up/real"), OFlags::PATH).unwrap();
        assert_eq!(real(&fd), root.join("real"));
        let fd = open_in_root(dir.as_fd(), Path::new("up"), OFlags::PATH).unwrap();
        assert_eq!(real(&fd), root);
    }

    #[test]
    fn a_chain_past_the_limit_is_eloop_not_a_host_path() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        // l0 -> l1 -> ... -> l40 -> /etc: 41 links.
        for i in 0..=MAX_SYMLINKS {
            let target = if i == MAX_SYMLINKS {
                "/etc".to_string()
            } else {
                format!("l{}", i + 1)
            };
            symlink(target, root.join(format!("l{i}"))).unwrap();
        }
        let dir = open_root(&root).unwrap();
        for r in [
            open_in_root(dir.as_fd(), Path::new("l0/passwd"), OFlags::PATH).map(drop),
            create_in_root(dir.as_fd(), Path::new("l0/x"), Kind::Dir).map(drop),
            create_in_root(dir.as_fd(), Path::new("l0"), Kind::File).map(drop),
            read_in_root(&root, Path::new("l0/passwd"), 1 << 20).map(drop),
        ] {
            assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::ELOOP));
        }
        assert!(!root.join("etc").exists());
    }

    #[test]
    fn create_follows_dangling_links_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        symlink("../run/resolve/stub.conf", root.join("etc/resolv.conf")).unwrap();
        symlink("/../../outside", root.join("esc")).unwrap();
        let dir = open_root(&root).unwrap();
        let fd = create_in_root(dir.as_fd(), Path::new("/etc/resolv.conf"), Kind::File).unwrap();
        assert_eq!(real(&fd), root.join("run/resolve/stub.conf"));
        assert!(root.join("run/resolve/stub.conf").is_file());
        let fd = create_in_root(dir.as_fd(), Path::new("/esc/a/b"), Kind::Dir).unwrap();
        assert_eq!(real(&fd), root.join("outside/a/b"));
        assert!(!t.path().join("outside").exists());
        // Existing entries are opened, not re-created.
        let fd = create_in_root(dir.as_fd(), Path::new("etc"), Kind::Dir).unwrap();
        assert_eq!(real(&fd), root.join("etc"));
    }

    #[test]
    fn reads_only_regular_files() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/passwd"), "root:x:0:0::/:/bin/sh\n").unwrap();
        symlink("/etc/passwd", root.join("p")).unwrap();
        nix::unistd::mkfifo(
            &root.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        assert_eq!(
            read_in_root(&root, Path::new("/p"), 1 << 20).unwrap(),
            b"root:x:0:0::/:/bin/sh\n"
        );
        assert_eq!(read_in_root(&root, Path::new("/p"), 4).unwrap(), b"root");
        let e = read_in_root(&root, Path::new("fifo"), 10).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            read_in_root(&root, Path::new("nope"), 10)
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
    }
}

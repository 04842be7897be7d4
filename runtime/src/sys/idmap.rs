//! Raw syscalls for user namespaces and id-mapped mounts.
//!
//! Two primitives, both used by [`crate::idmap`]:
//!
//! - the new mount API calls that make an id-mapped mount: `open_tree`
//!   (`OPEN_TREE_CLONE`: a detached copy of a mount), `mount_setattr`
//!   (`MOUNT_ATTR_IDMAP` with a user namespace fd: the copy shows every file
//!   owner through that namespace's maps) and `move_mount` (attach it);
//!   `mount_setattr` also makes a mount tree read-only as a whole
//!   ([`set_readonly_recursive`]);
//! - [`spawn_userns_child`]: a child in a fresh user namespace whose uid/gid
//!   maps the *parent* writes. The maps must come from outside the new
//!   namespace: a process inside may only write a one-line map of its own ids,
//!   and only after denying `setgroups`, which would then be denied to every
//!   container of the pod for ever. The parent, root in the initial namespace,
//!   may write any map, and `setgroups` stays allowed.
//!
//! The handshake, over two pipes (`ready` child → parent, `go` parent → child):
//!
//! ```text
//! child:  unshare(CLONE_NEWUSER) ── write "u" ──────────────── wait "g" ── setresgid/uid(0) ── work() ── report ── wait for EOF ── _exit
//! parent: ─────────────────────── read "u" ── write uid_map, gid_map ── "g" ── read report ── bind /proc/<child>/ns/* ── close ── waitpid
//! ```
//!
//! Only call [`spawn_userns_child`] from a single-threaded process (the
//! monitor): the child runs Rust code after fork.

// Kernel ABI: syscall results and fds are machine words and fds fit in i32
// (below RLIMIT_NOFILE); mount_attr carries the userns fd as a u64.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use super::process::{self, Fork};

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;
/// Follow a final symlink of the target: `/proc/self/fd/N` names are magic links.
const MOVE_MOUNT_T_SYMLINKS: libc::c_uint = 0x10;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

fn cpath(p: &Path) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// open_tree(2) with `OPEN_TREE_CLONE`: a detached copy of the mount at `path`
/// (its whole tree with `recursive`), gone when the fd is closed unless it is
/// attached first.
pub fn open_tree_clone(path: &Path, recursive: bool) -> io::Result<OwnedFd> {
    let c = cpath(path)?;
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: `c` is a NUL-terminated path that outlives the call; the
    // syscall only reads it and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// mount_setattr(2) with `MOUNT_ATTR_IDMAP` on a detached mount: it shows
/// owners through the maps of the user namespace `userns`. `EINVAL` when the
/// filesystem cannot be id-mapped (tmpfs before 6.3, proc, sysfs, …) or the
/// mount is attached; `EPERM` without privilege over the filesystem.
pub fn set_idmap(mount: &OwnedFd, userns: &impl AsRawFd, recursive: bool) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    mount_setattr(mount.as_raw_fd(), c"", flags, &attr)
}

/// mount_setattr(2) with `AT_RECURSIVE` and `MOUNT_ATTR_RDONLY` on the mount
/// at `target` (a path, possibly a `/proc/self/fd/N` name): it and every
/// mount below it become read-only. A remount with `MS_RDONLY` changes only
/// the top mount of a recursive bind, leaving its submounts writable; this is
/// what the OCI `rro` option (CRI `recursive_read_only`) asks for.
pub fn set_readonly_recursive(target: &Path) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let c = cpath(target)?;
    mount_setattr(
        libc::AT_FDCWD,
        &c,
        libc::AT_RECURSIVE as libc::c_uint,
        &attr,
    )
}

fn mount_setattr(
    dirfd: RawFd,
    path: &std::ffi::CStr,
    flags: libc::c_uint,
    attr: &MountAttr,
) -> io::Result<()> {
    // SAFETY: `attr` is a properly laid out `struct mount_attr` that lives
    // across the call and whose size is passed; `path` is a NUL-terminated
    // string that outlives it; the kernel only reads both.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dirfd,
            path.as_ptr(),
            flags,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// move_mount(2) of the detached mount `mount` onto `target` (a path, which
/// may be a `/proc/self/fd/N` name of a resolved directory or file).
pub fn attach(mount: RawFd, target: &Path) -> io::Result<()> {
    let c = cpath(target)?;
    let empty = c"";
    // SAFETY: both strings are NUL-terminated and outlive the call; the
    // kernel only reads them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mount,
            empty.as_ptr(),
            libc::AT_FDCWD,
            c.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_SYMLINKS,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A child process living in a fresh user namespace with the maps its parent
/// wrote. It stays alive (so its namespaces can be opened or bound through
/// `/proc/<pid>/ns/`) until [`UsernsChild::finish`].
#[derive(Debug)]
pub struct UsernsChild {
    pub pid: i32,
    /// What the child's `work` reported (its first line).
    pub report: String,
    hold: Option<File>,
}

impl UsernsChild {
    /// Lets the child exit and reaps it.
    pub fn finish(mut self) {
        self.reap();
    }

    fn reap(&mut self) {
        if self.hold.take().is_some() {
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(self.pid), None);
        }
    }
}

impl Drop for UsernsChild {
    fn drop(&mut self) {
        self.reap();
    }
}

fn pipe() -> io::Result<(File, File)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
    Ok((File::from(r), File::from(w)))
}

/// Forks a child that unshares a user namespace, waits for the parent to write
/// `uid_map`/`gid_map` (lines `inside outside length`), becomes root in it,
/// runs `work` (whose `Ok` text or `Err` message comes back as the report)
/// and then waits until the parent calls [`UsernsChild::finish`]. An `Err`
/// from `work` is returned as an error after the child was reaped.
pub fn spawn_userns_child(
    uid_map: &str,
    gid_map: &str,
    work: impl FnOnce() -> Result<String, String>,
) -> io::Result<UsernsChild> {
    let (ready_r, ready_w) = pipe()?;
    let (go_r, go_w) = pipe()?;
    let (hold_r, hold_w) = pipe()?;
    match process::fork()? {
        Fork::Child => {
            drop((ready_r, go_w, hold_w));
            let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
            let mut ready_w = ready_w;
            let mut go_r = go_r;
            let mut hold_r = hold_r;
            let line = (|| -> Result<String, String> {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER)
                    .map_err(|e| format!("unshare user namespace: {e}"))?;
                ready_w.write_all(b"u").map_err(|e| e.to_string())?;
                let mut b = [0u8; 1];
                if go_r.read(&mut b).map_err(|e| e.to_string())? != 1 {
                    return Err("parent gave up".into());
                }
                // Root of the new namespace from here (the maps are written).
                nix::unistd::setresgid(0.into(), 0.into(), 0.into())
                    .map_err(|e| format!("setresgid 0 in the user namespace: {e}"))?;
                nix::unistd::setresuid(0.into(), 0.into(), 0.into())
                    .map_err(|e| format!("setresuid 0 in the user namespace: {e}"))?;
                work()
            })();
            let msg = match line {
                Ok(s) => format!("ok {s}\n"),
                Err(e) => format!("error {}\n", e.replace('\n', " ")),
            };
            let _ = ready_w.write_all(msg.as_bytes());
            drop(ready_w);
            // Hold the namespaces until the parent has bound what it needs.
            let mut b = [0u8; 1];
            let _ = hold_r.read(&mut b);
            process::exit_now(0)
        }
        Fork::Parent(pid) => {
            drop((ready_w, go_r, hold_r));
            let mut child = UsernsChild {
                pid,
                report: String::new(),
                hold: Some(hold_w),
            };
            let mut ready_r = ready_r;
            let mut go_w = go_w;
            let mut b = [0u8; 1];
            let mut rest = String::new();
            if ready_r.read(&mut b)? != 1 || b[0] != b'u' {
                let _ = ready_r.read_to_string(&mut rest);
                return Err(io::Error::other(format!(
                    "user namespace child failed: {}",
                    rest.trim().trim_start_matches("error ")
                )));
            }
            for (file, map) in [("uid_map", uid_map), ("gid_map", gid_map)] {
                let path = format!("/proc/{pid}/{file}");
                std::fs::write(&path, map)
                    .map_err(|e| io::Error::new(e.kind(), format!("write {path}: {e}")))?;
            }
            go_w.write_all(b"g")?;
            drop(go_w);
            ready_r.read_to_string(&mut rest)?;
            let line = rest.lines().next().unwrap_or("");
            match line.strip_prefix("ok") {
                Some(r) => {
                    child.report = r.trim().to_string();
                    Ok(child)
                }
                None => Err(io::Error::other(
                    line.strip_prefix("error ")
                        .unwrap_or("user namespace child exited")
                        .to_string(),
                )),
            }
        }
    }
}

/// Clones a process into the existing user namespace `userns` (and the
/// existing pid namespace `pidns`, if given) with new namespaces `flags`,
/// owned by that user namespace (the kernel records the creator's user
/// namespace as owner). A process cannot leave a user
/// namespace, so a throwaway helper forked from the caller does the setns and
/// then clones with `CLONE_PARENT`: the new process is the caller's child (it
/// can wait for it), and the caller itself keeps the host's privileges.
/// The helper itself stays in the caller's pid namespace (a joined one only
/// becomes its children's), so the pid it reports is the one the caller sees.
/// Returns like fork: `Child` in the new process, `Parent(pid)` in the caller.
/// Only from a single-threaded process.
pub fn clone_into_userns(userns: RawFd, pidns: Option<RawFd>, flags: i32) -> io::Result<Fork> {
    let (mut r, w) = pipe()?;
    match process::fork()? {
        Fork::Child => {
            drop(r);
            let mut w = w;
            let join = |fd: RawFd, kind: nix::sched::CloneFlags| {
                nix::sched::setns(
                    // SAFETY: the caller keeps `userns` and `pidns` open across this call.
                    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
                    kind,
                )
                .map_err(|e| io::Error::from_raw_os_error(e as i32))
            };
            // The pid namespace first, while still root of the host.
            let res = pidns
                .map_or(Ok(()), |fd| join(fd, nix::sched::CloneFlags::CLONE_NEWPID))
                .and_then(|_| join(userns, nix::sched::CloneFlags::CLONE_NEWUSER))
                .and_then(|_| process::clone_with_flags(flags | libc::CLONE_PARENT));
            match res {
                Ok(Fork::Child) => {
                    // The new process: the caller's reader must see EOF.
                    drop(w);
                    Ok(Fork::Child)
                }
                Ok(Fork::Parent(pid)) => {
                    let _ = w.write_all(format!("{pid}").as_bytes());
                    process::exit_now(0)
                }
                Err(e) => {
                    let _ = w.write_all(
                        format!("e{}", e.raw_os_error().unwrap_or(libc::EIO)).as_bytes(),
                    );
                    process::exit_now(1)
                }
            }
        }
        Fork::Parent(helper) => {
            drop(w);
            let mut out = String::new();
            let read = r.read_to_string(&mut out);
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(helper), None);
            read?;
            if let Some(errno) = out.strip_prefix('e') {
                return Err(io::Error::from_raw_os_error(
                    errno.parse().unwrap_or(libc::EIO),
                ));
            }
            out.parse::<i32>()
                .map(Fork::Parent)
                .map_err(|_| io::Error::other("user namespace helper exited without a pid"))
        }
    }
}

/// The inode number of the user namespace that owns the namespace file at
/// `ns` (ioctl `NS_GET_USERNS`), to check which user namespace a pinned
/// namespace belongs to.
pub fn owner_userns_ino(ns: &Path) -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    const NS_GET_USERNS: libc::c_ulong = 0xb701;
    let f = File::open(ns)?;
    // SAFETY: NS_GET_USERNS takes no argument and returns a new fd or -1.
    let fd = unsafe { libc::ioctl(f.as_raw_fd(), NS_GET_USERNS as _) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd; nothing else owns it.
    let owner = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    Ok(owner.metadata()?.ino())
}

//! The only place with `unsafe` code and raw system calls.
//!
//! Container set-up logic talks to the kernel through [`Syscall`], so unit tests can
//! run the same logic against [`fake::RecordingSyscall`], assert the calls it made
//! and inject failures. [`linux::LinuxSyscall`] is the real implementation.
//! Process plumbing that has no sensible fake (fork, clone, poll, ptys, signals)
//! lives in [`process`] as small safe wrappers.

pub mod bpf;
pub mod fake;
pub mod idmap;
pub mod inroot;
pub mod linux;
pub mod process;

use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::path::{Path, PathBuf};

/// A path inside a rootfs resolved by [`Syscall::resolve_in_root`].
#[derive(Debug)]
pub struct InRoot {
    /// What to hand to path-taking calls (mount(2), mknod(2)): `/proc/self/fd/N`
    /// for the real kernel, so the call acts on the inode the lookup found.
    pub path: PathBuf,
    /// Keeps `path` valid; `None` in the fake.
    owned: Option<OwnedFd>,
}

impl InRoot {
    /// Wraps a descriptor the kernel resolved.
    pub fn from_fd(fd: OwnedFd) -> Self {
        InRoot {
            path: inroot::fd_path(&fd),
            owned: Some(fd),
        }
    }

    /// The descriptor behind [`InRoot::path`] (`None` in the fake).
    pub fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.owned.as_ref().map(|f| f.as_fd())
    }

    /// A path the fake syscall layer made up without a lookup.
    pub(crate) fn fake(path: PathBuf) -> Self {
        InRoot { path, owned: None }
    }
}

/// Capability sets as bit masks (bit N = capability number N).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapSets {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

/// The kernel operations container set-up needs.
pub trait Syscall {
    /// mount(2); `flags` are `MS_*` bits.
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: u64,
        data: Option<&str>,
    ) -> io::Result<()>;
    /// umount2(2) with `MNT_*` flags.
    fn umount2(&self, target: &Path, flags: i32) -> io::Result<()>;
    /// move_mount(2) of a detached mount (from open_tree) onto `target`.
    fn attach_mount(&self, fd: RawFd, target: &Path) -> io::Result<()>;
    /// mount_setattr(2): the mount at `target` and all mounts below it read-only.
    fn set_readonly_recursive(&self, target: &Path) -> io::Result<()>;
    /// pivot_root(2).
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> io::Result<()>;
    /// chdir(2).
    fn chdir(&self, path: &Path) -> io::Result<()>;
    /// fchdir(2) to a directory resolved earlier.
    fn fchdir(&self, dir: &InRoot) -> io::Result<()>;
    /// sethostname(2).
    fn sethostname(&self, name: &str) -> io::Result<()>;
    /// setdomainname(2).
    fn setdomainname(&self, name: &str) -> io::Result<()>;
    /// setns(2) on an open namespace file.
    fn setns(&self, fd: RawFd, nstype: i32) -> io::Result<()>;
    /// unshare(2) with `CLONE_*` flags.
    fn unshare(&self, flags: i32) -> io::Result<()>;
    /// setgroups(2).
    fn setgroups(&self, gids: &[u32]) -> io::Result<()>;
    /// setresgid(gid, gid, gid).
    fn setgid(&self, gid: u32) -> io::Result<()>;
    /// setresuid(uid, uid, uid).
    fn setuid(&self, uid: u32) -> io::Result<()>;
    /// prctl(PR_SET_KEEPCAPS).
    fn set_keep_caps(&self, keep: bool) -> io::Result<()>;
    /// Drops the bounding set to `caps.bounding`, then sets the other four sets.
    fn set_capabilities(&self, caps: &CapSets) -> io::Result<()>;
    /// prctl(PR_SET_NO_NEW_PRIVS).
    fn set_no_new_privs(&self) -> io::Result<()>;
    /// setrlimit(2) with a `RLIMIT_*` resource number.
    fn setrlimit(&self, resource: u32, soft: u64, hard: u64) -> io::Result<()>;
    /// umask(2).
    fn umask(&self, mask: u32);
    /// mknod(2) with the full mode (type bits included).
    fn mknod(&self, path: &Path, mode: u32, major: u64, minor: u64) -> io::Result<()>;
    /// chown(2) without following a final symlink.
    fn lchown(&self, path: &Path, uid: u32, gid: u32) -> io::Result<()>;
    /// symlink(2).
    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()>;
    /// Creates a directory and its parents.
    fn mkdir_all(&self, path: &Path, mode: u32) -> io::Result<()>;
    /// Creates an empty regular file if nothing exists at `path` (a bind-mount target).
    fn create_file(&self, path: &Path) -> io::Result<()>;
    /// Resolves `path` as seen from inside `root` (symlinks and `..` never
    /// leave it, `ELOOP` past 40 links), creating it as `create` when missing.
    fn resolve_in_root(
        &self,
        root: &Path,
        path: &Path,
        create: Option<inroot::Kind>,
    ) -> io::Result<InRoot>;
    /// Writes `data` to an existing file (procfs, sysfs).
    fn write_file(&self, path: &Path, data: &str) -> io::Result<()>;
    /// Loads a compiled seccomp filter (a sequence of `sock_filter` bytes).
    fn load_seccomp(&self, filter: &seccomp::Filter) -> io::Result<()>;
    /// execve(2); only returns on failure.
    fn execve(&self, path: &Path, args: &[String], env: &[String]) -> io::Error;
}

/// Seccomp filter types shared by the real and the fake syscall layer.
pub mod seccomp {
    /// A filter built from the spec, ready to load.
    #[derive(Debug)]
    pub struct Filter {
        /// The compiled BPF program; `None` in unit tests that only check the
        /// call order. Compiled ahead (not by libseccomp's load) so that the
        /// expensive part can run before the process is ready to load it.
        pub program: Option<Vec<libc::sock_filter>>,
        /// A short description for test assertions and errors.
        pub summary: String,
    }
}

//! The real [`Syscall`] implementation.

use super::{inroot, seccomp, CapSets, InRoot, Syscall};
use std::ffi::CString;
use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::{Gid, Uid};

/// Talks to the Linux kernel.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinuxSyscall;

fn nix_err(e: nix::Error) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

fn caps_err(e: caps::errors::CapsError) -> io::Error {
    io::Error::other(e.to_string())
}

fn cap_set(mask: u64) -> caps::CapsHashSet {
    caps::all()
        .into_iter()
        .filter(|c| c.index() < 64 && mask & (1u64 << c.index()) != 0)
        .collect()
}

impl Syscall for LinuxSyscall {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: u64,
        data: Option<&str>,
    ) -> io::Result<()> {
        nix::mount::mount(
            source,
            target,
            fstype,
            MsFlags::from_bits_retain(flags as libc::c_ulong),
            data,
        )
        .map_err(nix_err)
    }

    fn umount2(&self, target: &Path, flags: i32) -> io::Result<()> {
        nix::mount::umount2(target, MntFlags::from_bits_retain(flags)).map_err(nix_err)
    }

    fn attach_mount(&self, fd: RawFd, target: &Path) -> io::Result<()> {
        super::idmap::attach(fd, target)
    }

    fn set_readonly_recursive(&self, target: &Path) -> io::Result<()> {
        super::idmap::set_readonly_recursive(target)
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> io::Result<()> {
        nix::unistd::pivot_root(new_root, put_old).map_err(nix_err)
    }

    fn chdir(&self, path: &Path) -> io::Result<()> {
        nix::unistd::chdir(path).map_err(nix_err)
    }

    fn fchdir(&self, dir: &InRoot) -> io::Result<()> {
        match dir.fd() {
            Some(fd) => rustix::process::fchdir(fd)
                .map_err(|e| io::Error::from_raw_os_error(e.raw_os_error())),
            None => self.chdir(&dir.path),
        }
    }

    fn sethostname(&self, name: &str) -> io::Result<()> {
        nix::unistd::sethostname(name).map_err(nix_err)
    }

    fn setdomainname(&self, name: &str) -> io::Result<()> {
        // SAFETY: the pointer and length describe `name`, which outlives the call.
        let rc = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn setns(&self, fd: RawFd, nstype: i32) -> io::Result<()> {
        // SAFETY: the caller passes an fd it keeps open for the duration of the call.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        nix::sched::setns(fd, CloneFlags::from_bits_retain(nstype)).map_err(nix_err)
    }

    fn unshare(&self, flags: i32) -> io::Result<()> {
        nix::sched::unshare(CloneFlags::from_bits_retain(flags)).map_err(nix_err)
    }

    fn setgroups(&self, gids: &[u32]) -> io::Result<()> {
        let gids: Vec<Gid> = gids.iter().map(|g| Gid::from_raw(*g)).collect();
        nix::unistd::setgroups(&gids).map_err(nix_err)
    }

    fn setgid(&self, gid: u32) -> io::Result<()> {
        let g = Gid::from_raw(gid);
        nix::unistd::setresgid(g, g, g).map_err(nix_err)
    }

    fn setuid(&self, uid: u32) -> io::Result<()> {
        let u = Uid::from_raw(uid);
        nix::unistd::setresuid(u, u, u).map_err(nix_err)
    }

    fn set_keep_caps(&self, keep: bool) -> io::Result<()> {
        nix::sys::prctl::set_keepcaps(keep).map_err(nix_err)
    }

    fn set_capabilities(&self, c: &CapSets) -> io::Result<()> {
        use caps::CapSet;
        // Raise everything still permitted so CAP_SETPCAP is effective for the
        // bounding-set drops even after a switch to a non-root uid.
        let permitted = caps::read(None, CapSet::Permitted).map_err(caps_err)?;
        caps::set(None, CapSet::Effective, &permitted).map_err(caps_err)?;
        for cap in caps::all() {
            if cap.index() < 64 && c.bounding & (1u64 << cap.index()) == 0 {
                match caps::drop(None, CapSet::Bounding, cap) {
                    Ok(()) => {}
                    // Capabilities the running kernel does not know cannot be dropped.
                    Err(_) if !caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) => {}
                    Err(e) => return Err(caps_err(e)),
                }
            }
        }
        caps::set(None, CapSet::Inheritable, &cap_set(c.inheritable)).map_err(caps_err)?;
        caps::set(None, CapSet::Effective, &cap_set(c.effective & c.permitted))
            .map_err(caps_err)?;
        caps::set(None, CapSet::Permitted, &cap_set(c.permitted)).map_err(caps_err)?;
        caps::set(None, CapSet::Effective, &cap_set(c.effective)).map_err(caps_err)?;
        caps::set(None, CapSet::Ambient, &cap_set(c.ambient)).map_err(caps_err)?;
        Ok(())
    }

    fn set_no_new_privs(&self) -> io::Result<()> {
        nix::sys::prctl::set_no_new_privs().map_err(nix_err)
    }

    fn setrlimit(&self, resource: u32, soft: u64, hard: u64) -> io::Result<()> {
        let lim = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: `lim` is a valid rlimit that lives across the call.
        let rc = unsafe { libc::setrlimit(resource as _, &lim) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn umask(&self, mask: u32) {
        nix::sys::stat::umask(Mode::from_bits_truncate(mask));
    }

    fn mknod(&self, path: &Path, mode: u32, major: u64, minor: u64) -> io::Result<()> {
        let kind = SFlag::from_bits_truncate(mode & libc::S_IFMT);
        let perm = Mode::from_bits_truncate(mode & 0o7777);
        let (Ok(major), Ok(minor)) = (u32::try_from(major), u32::try_from(minor)) else {
            return Err(io::Error::from_raw_os_error(libc::EOVERFLOW));
        };
        nix::sys::stat::mknod(path, kind, perm, libc::makedev(major, minor)).map_err(nix_err)
    }

    fn lchown(&self, path: &Path, uid: u32, gid: u32) -> io::Result<()> {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))
    }

    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()> {
        std::os::unix::fs::symlink(target, link)
    }

    fn mkdir_all(&self, path: &Path, mode: u32) -> io::Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(path)
    }

    fn create_file(&self, path: &Path) -> io::Result<()> {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn resolve_in_root(
        &self,
        root: &Path,
        path: &Path,
        create: Option<inroot::Kind>,
    ) -> io::Result<InRoot> {
        use std::os::fd::AsFd;
        let dir = inroot::open_root(root)?;
        let fd = match create {
            Some(kind) => inroot::create_in_root(dir.as_fd(), path, kind)?,
            None => inroot::open_in_root(dir.as_fd(), path, rustix::fs::OFlags::PATH)?,
        };
        Ok(InRoot::from_fd(fd))
    }

    fn write_file(&self, path: &Path, data: &str) -> io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
        f.write_all(data.as_bytes())
    }

    fn load_seccomp(&self, filter: &seccomp::Filter) -> io::Result<()> {
        let Some(program) = &filter.program else {
            return Ok(());
        };
        let len =
            u16::try_from(program.len()).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?;
        let prog = libc::sock_fprog {
            len,
            filter: program.as_ptr().cast_mut(),
        };
        // What libseccomp's load does for a filter without flags (no tsync,
        // no log): prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog).
        // SAFETY: `prog` points at `len` instructions that outlive the call;
        // the kernel copies them and does not keep the pointer.
        let rc = unsafe {
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const libc::sock_fprog,
                0,
                0,
            )
        };
        if rc == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    fn execve(&self, path: &Path, args: &[String], env: &[String]) -> io::Error {
        let to_c =
            |s: &str| CString::new(s).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL));
        let path = match to_c(&path.to_string_lossy()) {
            Ok(p) => p,
            Err(e) => return e,
        };
        let args: Result<Vec<CString>, _> = args.iter().map(|a| to_c(a)).collect();
        let env: Result<Vec<CString>, _> = env.iter().map(|a| to_c(a)).collect();
        match (args, env) {
            (Ok(a), Ok(e)) => match nix::unistd::execve(&path, &a, &e) {
                Ok(never) => match never {},
                Err(e) => nix_err(e),
            },
            (Err(e), _) | (_, Err(e)) => e,
        }
    }
}

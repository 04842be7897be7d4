//! A [`Syscall`] that records calls instead of making them, for unit tests.

use super::{inroot, seccomp, CapSets, InRoot, Syscall};
use std::cell::RefCell;
use std::io;
use std::os::fd::RawFd;
use std::path::Path;

/// Records every call as a line such as `mount proc /proc`; fails calls whose line
/// starts with a prefix registered through [`RecordingSyscall::fail_on`].
#[derive(Debug, Default)]
pub struct RecordingSyscall {
    calls: RefCell<Vec<String>>,
    failures: RefCell<Vec<(String, i32)>>,
}

impl RecordingSyscall {
    /// A fake that succeeds at everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every call whose recorded line starts with `prefix` fail with `errno`.
    pub fn fail_on(&self, prefix: &str, errno: i32) {
        self.failures.borrow_mut().push((prefix.to_string(), errno));
    }

    /// The calls made so far.
    pub fn calls(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }

    fn record(&self, line: String) -> io::Result<()> {
        let fail = self
            .failures
            .borrow()
            .iter()
            .find(|(p, _)| line.starts_with(p.as_str()))
            .map(|(_, e)| *e);
        self.calls.borrow_mut().push(line);
        match fail {
            Some(errno) => Err(io::Error::from_raw_os_error(errno)),
            None => Ok(()),
        }
    }
}

fn opt_path(p: Option<&Path>) -> String {
    p.map(|p| p.display().to_string())
        .unwrap_or_else(|| "-".into())
}

impl Syscall for RecordingSyscall {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: u64,
        data: Option<&str>,
    ) -> io::Result<()> {
        self.record(format!(
            "mount {} {} {} {:#x} {}",
            opt_path(source),
            target.display(),
            fstype.unwrap_or("-"),
            flags,
            data.unwrap_or("-")
        ))
    }
    fn umount2(&self, target: &Path, flags: i32) -> io::Result<()> {
        self.record(format!("umount2 {} {flags}", target.display()))
    }
    fn attach_mount(&self, fd: RawFd, target: &Path) -> io::Result<()> {
        self.record(format!("attach_mount fd {fd} {}", target.display()))
    }
    fn set_readonly_recursive(&self, target: &Path) -> io::Result<()> {
        self.record(format!("set_readonly_recursive {}", target.display()))
    }
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> io::Result<()> {
        self.record(format!(
            "pivot_root {} {}",
            new_root.display(),
            put_old.display()
        ))
    }
    fn chdir(&self, path: &Path) -> io::Result<()> {
        self.record(format!("chdir {}", path.display()))
    }
    fn fchdir(&self, dir: &InRoot) -> io::Result<()> {
        self.record(format!("fchdir {}", dir.path.display()))
    }
    fn sethostname(&self, name: &str) -> io::Result<()> {
        self.record(format!("sethostname {name}"))
    }
    fn setdomainname(&self, name: &str) -> io::Result<()> {
        self.record(format!("setdomainname {name}"))
    }
    fn setns(&self, fd: RawFd, nstype: i32) -> io::Result<()> {
        self.record(format!("setns {fd} {nstype:#x}"))
    }
    fn unshare(&self, flags: i32) -> io::Result<()> {
        self.record(format!("unshare {flags:#x}"))
    }
    fn setgroups(&self, gids: &[u32]) -> io::Result<()> {
        self.record(format!("setgroups {gids:?}"))
    }
    fn setgid(&self, gid: u32) -> io::Result<()> {
        self.record(format!("setgid {gid}"))
    }
    fn setuid(&self, uid: u32) -> io::Result<()> {
        self.record(format!("setuid {uid}"))
    }
    fn set_keep_caps(&self, keep: bool) -> io::Result<()> {
        self.record(format!("set_keep_caps {keep}"))
    }
    fn set_capabilities(&self, caps: &CapSets) -> io::Result<()> {
        self.record(format!(
            "set_capabilities bnd={:#x} eff={:#x} prm={:#x} inh={:#x} amb={:#x}",
            caps.bounding, caps.effective, caps.permitted, caps.inheritable, caps.ambient
        ))
    }
    fn set_no_new_privs(&self) -> io::Result<()> {
        self.record("set_no_new_privs".into())
    }
    fn setrlimit(&self, resource: u32, soft: u64, hard: u64) -> io::Result<()> {
        self.record(format!("setrlimit {resource} {soft} {hard}"))
    }
    fn umask(&self, mask: u32) {
        let _ = self.record(format!("umask {mask:o}"));
    }
    fn mknod(&self, path: &Path, mode: u32, major: u64, minor: u64) -> io::Result<()> {
        self.record(format!("mknod {} {mode:o} {major}:{minor}", path.display()))
    }
    fn lchown(&self, path: &Path, uid: u32, gid: u32) -> io::Result<()> {
        self.record(format!("lchown {} {uid} {gid}", path.display()))
    }
    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()> {
        self.record(format!("symlink {} {}", target.display(), link.display()))
    }
    fn mkdir_all(&self, path: &Path, mode: u32) -> io::Result<()> {
        self.record(format!("mkdir_all {} {mode:o}", path.display()))
    }
    fn create_file(&self, path: &Path) -> io::Result<()> {
        self.record(format!("create_file {}", path.display()))
    }
    fn resolve_in_root(
        &self,
        root: &Path,
        path: &Path,
        create: Option<inroot::Kind>,
    ) -> io::Result<InRoot> {
        // Lexical only: the fake has no file system to resolve in.
        let full = root.join(path.strip_prefix("/").unwrap_or(path));
        let kind = match create {
            Some(inroot::Kind::Dir) => "dir",
            Some(inroot::Kind::File) => "file",
            None => "-",
        };
        self.record(format!("resolve {} {kind}", full.display()))?;
        Ok(InRoot::fake(full))
    }
    fn write_file(&self, path: &Path, data: &str) -> io::Result<()> {
        self.record(format!("write_file {} {data}", path.display()))
    }
    fn load_seccomp(&self, filter: &seccomp::Filter) -> io::Result<()> {
        self.record(format!("load_seccomp {}", filter.summary))
    }
    fn execve(&self, path: &Path, args: &[String], env: &[String]) -> io::Error {
        match self.record(format!("execve {} {args:?} {env:?}", path.display())) {
            Err(e) => e,
            Ok(()) => io::Error::other("fake execve does not replace the process"),
        }
    }
}

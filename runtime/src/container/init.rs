//! The container's first process, between clone and exec.
//!
//! Runs in the freshly cloned child of the monitor. Talks to the monitor over a
//! socket pair with one-line messages: it sets itself up, waiting for `go`
//! (uid/gid maps and cgroup are in place) at the first step that needs it,
//! answers `ready` (with the terminal's master attached, for
//! `process.terminal`) or `error <message>`, waits for `done` (device rules are in
//! place), then blocks reading the exec fifo until `start()` writes a byte to
//! it, and execs. The monitor sends at most one line ahead of what the init has
//! read, so a fresh [`read_line`] buffer never swallows the next line.

use crate::error::{Error, Result};
use crate::rootfs::{self, HostInfo};
use crate::security::{self, SecurityOptions};
use crate::sys::linux::LinuxSyscall;
use crate::sys::process::{self, exit_now};
use crate::sys::seccomp::Filter;
use crate::sys::Syscall;
use oci_spec::runtime::{Process, Spec};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// The container process's standard streams, as fds valid in the child.
#[derive(Debug)]
pub enum ChildStdio {
    /// stdin (a pipe or /dev/null), stdout and stderr pipes.
    Pipes {
        stdin: RawFd,
        stdout: RawFd,
        stderr: RawFd,
    },
    /// `process.terminal`: a pty the init opens from the container's devpts
    /// (see [`rootfs::setup`]), made its stdio and controlling terminal; the
    /// master goes to the monitor with the `ready` line.
    Terminal,
}

impl ChildStdio {
    fn fds(&self) -> Vec<RawFd> {
        match *self {
            ChildStdio::Pipes {
                stdin,
                stdout,
                stderr,
            } => vec![stdin, stdout, stderr],
            ChildStdio::Terminal => vec![],
        }
    }
}

/// Everything the child needs, prepared by the monitor before clone.
#[derive(Debug)]
pub struct InitArgs<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub stdio: ChildStdio,
    pub sync: &'a UnixStream,
    /// The exec fifo, opened by the monitor (the init may not be allowed to).
    pub fifo: FifoEnds,
    pub join_mnt: Option<RawFd>,
    /// A joined user namespace: the rootfs mount, opened by the monitor (see
    /// [`super::userns`]).
    pub rootfs_fd: Option<&'a OwnedFd>,
    pub new_cgroupns: bool,
    pub host: HostInfo,
    pub security: SecurityOptions,
    /// The compiled `linux.seccomp` filter, loaded last.
    pub seccomp: Option<&'a Filter>,
}

/// Sends one line to the other side of the sync socket.
pub fn send_line(mut s: &UnixStream, line: &str) -> std::io::Result<()> {
    let one = line.replace('\n', " ");
    s.write_all(format!("{one}\n").as_bytes())
}

/// Reads the init's answer line and the fd it may carry (the terminal's master).
pub fn read_answer(s: &UnixStream) -> std::io::Result<(String, Option<std::os::fd::OwnedFd>)> {
    let (line, fd) = process::recv_line_with_fd(s)?;
    Ok((String::from_utf8_lossy(&line).trim_end().to_string(), fd))
}

/// Reads one line; empty string on EOF.
pub fn read_line(s: &UnixStream) -> std::io::Result<String> {
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    Ok(line.trim_end().to_string())
}

/// Child entry point; never returns.
pub fn run(args: InitArgs<'_>) -> ! {
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    match prepare(&LinuxSyscall, &args) {
        Err(e) => {
            let _ = send_line(args.sync, &format!("error {e}"));
            exit_now(1)
        }
        Ok((path, argv, env, master)) => {
            let mut fifo = args.fifo;
            let master_fd = master.as_ref().map(|m| m.as_raw_fd());
            if process::send_with_fd(args.sync, b"ready\n", master_fd).is_err() {
                exit_now(1);
            }
            drop(master);
            // The device rules are written after our mknods; without `done`
            // (the monitor died or gave up) we must never exec.
            if !matches!(read_line(args.sync).as_deref(), Ok("done")) {
                exit_now(1);
            }
            // From here the container outlives its monitor.
            let _ = nix::sys::prctl::set_pdeathsig(None);
            let mut b = [0u8; 1];
            match fifo.0.read(&mut b) {
                Ok(1) => {}
                _ => exit_now(1),
            }
            drop(fifo);
            process::reset_signals();
            let e = LinuxSyscall.execve(&path, &argv, &env);
            let _ = writeln!(std::io::stderr(), "berth: exec {}: {e}", path.display());
            exit_now(127)
        }
    }
}

/// The fifo ends held by the waiting init: read end first, write end so the
/// read blocks rather than seeing EOF.
#[derive(Debug)]
pub struct FifoEnds(pub File, pub File);

/// Opens both ends of the exec fifo.
pub fn open_fifo(path: &Path) -> Result<FifoEnds> {
    let r = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let w = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    process::set_nonblocking(r.as_raw_fd(), false).map_err(|e| Error::sys("exec fifo", e))?;
    Ok(FifoEnds(r, w))
}

fn setup_stdio(stdio: &ChildStdio) -> Result<()> {
    nix::unistd::setsid().map_err(|e| Error::sys("setsid", e.into()))?;
    match *stdio {
        ChildStdio::Pipes {
            stdin,
            stdout,
            stderr,
        } => {
            for (from, to) in [(stdin, 0), (stdout, 1), (stderr, 2)] {
                process::dup2(from, to).map_err(|e| Error::sys("dup2 stdio", e))?;
            }
        }
        // Its pty exists only once the container's devpts is mounted.
        ChildStdio::Terminal => {}
    }
    Ok(())
}

/// Makes the container's pty slave the init's stdio and controlling terminal.
fn use_terminal(slave: &OwnedFd) -> Result<()> {
    process::dup_to_stdio(slave.as_raw_fd()).map_err(|e| Error::sys("dup2 pty", e))?;
    process::set_controlling_tty(0).map_err(|e| Error::sys("process.terminal: TIOCSCTTY", e))
}

/// What exec needs, and the terminal's master for the monitor.
type Prepared = (PathBuf, Vec<String>, Vec<String>, Option<File>);

/// Waits for the monitor's `go` once: from then on the process is in its
/// cgroups (and has its id maps), so it can enter a new cgroup namespace,
/// whose root is the cgroup it is in at that moment. It also takes its stdio
/// and its own session only then: a new session gets a new scheduler
/// autogroup when made outside a cpu cgroup (as in the monitor's), and
/// moving into one costs the init a scheduling round on a busy node.
struct CgroupGate<'a> {
    sync: &'a UnixStream,
    stdio: &'a ChildStdio,
    new_cgroupns: bool,
    passed: bool,
}

impl CgroupGate<'_> {
    fn pass(&mut self, sys: &dyn Syscall) -> Result<()> {
        if self.passed {
            return Ok(());
        }
        let go = read_line(self.sync).map_err(|e| Error::sys("read sync socket", e))?;
        if go != "go" {
            return Err(Error::Init(format!("monitor aborted set-up ({go:?})")));
        }
        self.passed = true;
        setup_stdio(self.stdio)?;
        for fd in self.stdio.fds().into_iter().filter(|fd| *fd > 2) {
            let _ = nix::unistd::close(fd);
        }
        if self.new_cgroupns {
            sys.unshare(libc::CLONE_NEWCGROUP)
                .map_err(|e| Error::sys("linux.namespaces(cgroup): unshare", e))?;
        }
        Ok(())
    }
}

fn prepare(sys: &dyn Syscall, a: &InitArgs<'_>) -> Result<Prepared> {
    let mut gate = CgroupGate {
        sync: a.sync,
        stdio: &a.stdio,
        new_cgroupns: a.new_cgroupns,
        passed: false,
    };
    if a.host.userns {
        // Nothing useful can happen before the id maps are written.
        gate.pass(sys)?;
    }
    // Everything else inherited from the monitor goes now, while /proc is
    // still the monitor's (joining a mount namespace changes what it shows).
    let mut keep = vec![
        a.sync.as_raw_fd(),
        a.fifo.0.as_raw_fd(),
        a.fifo.1.as_raw_fd(),
    ];
    keep.extend(a.join_mnt);
    keep.extend(a.rootfs_fd.map(|f| f.as_raw_fd()));
    keep.extend(a.host.mount_fds.iter().map(|(_, fd)| *fd));
    keep.extend(a.stdio.fds());
    process::close_fds_from(3, &keep);

    let mut host = a.host.clone();
    if rootfs::mounts_cgroupfs(a.spec) {
        // The hierarchies to mount are the monitor's, so read them before
        // joining another mount namespace.
        host.read_cgroup_mounts();
    }
    if let Some(fd) = a.join_mnt {
        sys.setns(fd, libc::CLONE_NEWNS)
            .map_err(|e| Error::sys("linux.namespaces(mount).path: setns", e))?;
    }
    if a.host.userns {
        sys.setgid(0)
            .map_err(|e| Error::sys("user namespace: setgid 0", e))?;
        sys.setuid(0)
            .map_err(|e| Error::sys("user namespace: setuid 0", e))?;
    }
    // In a joined user namespace the real rootfs path is out of reach now.
    let staged = match a.rootfs_fd {
        Some(fd) => Some(super::userns::stage_rootfs(sys, fd)?),
        None => None,
    };
    let rootfs_path = staged.as_deref().unwrap_or(a.rootfs);
    let process: &Process = a
        .spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::spec("process", "missing"))?;
    security::set_oom_score_adj(sys, process, "process", a.security)?;
    if let Some(h) = a.spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        sys.sethostname(h)
            .map_err(|e| Error::sys(format!("hostname: sethostname {h}"), e))?;
    }
    if let Some(d) = a.spec.domainname().as_deref().filter(|h| !h.is_empty()) {
        sys.setdomainname(d)
            .map_err(|e| Error::sys(format!("domainname: setdomainname {d}"), e))?;
    }
    if let Some(linux) = a.spec.linux() {
        for (k, v) in linux.sysctl().iter().flatten() {
            let path = Path::new("/proc/sys").join(k.replace('.', "/"));
            sys.write_file(&path, v)
                .map_err(|e| Error::sys(format!("linux.sysctl.{k}: write {v}"), e))?;
        }
    }
    let pty = rootfs::setup(sys, a.spec, rootfs_path, &host, &mut || gate.pass(sys))?;
    gate.pass(sys)?;
    let master = match pty {
        Some(p) => {
            use_terminal(&p.slave)?;
            Some(p.master)
        }
        None => None,
    };

    let exe = security::resolve_executable(process, "process")?;
    security::set_rlimits(sys, process, "process")?;
    sys.chdir(process.cwd())
        .map_err(|e| Error::sys(format!("process.cwd: chdir {}", process.cwd().display()), e))?;
    let setgroups_allowed = !a.host.userns
        || std::fs::read_to_string("/proc/self/setgroups")
            .map(|s| s.trim() == "allow")
            .unwrap_or(true);
    security::set_apparmor(sys, process, "process")?;
    security::set_selinux_label(sys, process, "process")?;
    security::set_identity(sys, process, a.seccomp, "process", setgroups_allowed)?;
    let argv = process.args().clone().unwrap_or_default();
    let env = process.env().clone().unwrap_or_default();
    Ok((exe, argv, env, master))
}

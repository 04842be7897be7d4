//! Creating a container: runs inside the (already detached) monitor process.
//!
//! Order: validate the spec, make the state dir, stdio and exec fifo, join
//! namespaces given by path (all but mount and user are joined by the monitor
//! itself, which is harmless for it and lets the new namespaces of the clone be
//! created in the right place), compile the seccomp filter, clone the init
//! with the new namespaces. Then two things run at once, one per side of the
//! sync socket:
//!
//! ```text
//! monitor: id maps, cgroup mkdir + limits, add pid ── "go" ──> state.json, attach socket ── wait "ready" ── device rules ── "done" ──> report ok
//! init:    close fds, hostname, sysctls, mounts up to the first cgroup mount ── wait "go" ── stdio + session, cgroupns, the rest of the rootfs, identity ── "ready" ── wait "done" ── wait exec fifo ── exec
//! ```
//!
//! Why the overlap is safe: until "go" the init only runs runtime code (no
//! user program) and touches nothing whose meaning depends on its cgroup; the
//! cgroup namespace root is the cgroup the init is in when it unshares, so the
//! init waits for "go" before that (and before any cgroup mount, and at the
//! very start when it has its own user namespace, whose id maps come with
//! "go"). The init cannot exec before "done", which the monitor sends only after
//! the device rules are written. With `process.terminal` the init opens the pty
//! from the container's devpts while it sets up /dev (so the terminal exists in
//! the container's /dev/pts), takes it as stdio after "go" and the rootfs, and
//! sends the master to the monitor attached to its "ready".
//!
//! Every step pushes an undo; a failure runs them in reverse, so a failed
//! create leaves no cgroup, process or state dir behind.

use super::init::{self, ChildStdio, InitArgs};
use super::state::{self, StateFile, FIFO_FILE, STATE_FILE, STATE_VERSION};
use super::userns;
use crate::cgroups::{self, CgroupManager};
use crate::error::{Error, Result};
use crate::rootfs::HostInfo;
use crate::seccomp_cache;
use crate::security::SecurityOptions;
use crate::spec::{self, ns_flag};
use crate::sys::linux::LinuxSyscall;
use crate::sys::process::{self, Fork};
use crate::sys::Syscall;
use oci_spec::runtime::LinuxNamespaceType;
use std::cell::Cell;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Inputs of `berth-monitor create`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateOptions {
    pub id: String,
    pub bundle: PathBuf,
    pub state_dir: PathBuf,
    /// Give the container a stdin pipe (held open by the monitor for attach);
    /// otherwise stdin is /dev/null.
    pub stdin: bool,
    pub security: SecurityOptions,
    /// Where cgroupfs is mounted; `/sys/fs/cgroup` outside tests.
    pub cgroup_root: PathBuf,
    /// Where compiled seccomp programs are kept between creates (see
    /// [`crate::seccomp_cache`]); `None` compiles every time.
    pub seccomp_cache: Option<PathBuf>,
}

/// The monitor's ends of the container's stdio.
#[derive(Debug)]
pub enum MonitorStdio {
    Pipes {
        stdin: Option<File>,
        stdout: File,
        stderr: File,
    },
    Pty {
        master: File,
    },
}

/// A created container, as the monitor holds it.
#[derive(Debug)]
pub struct Created {
    pub state: StateFile,
    pub stdio: MonitorStdio,
    pub cgroup: Box<dyn CgroupManager>,
    pub oom_baseline: u64,
    /// The attach socket, bound before create reports success so clients can
    /// connect as soon as `create` returns.
    pub attach: std::os::unix::net::UnixListener,
}

/// A rollback stack (style habit 10).
struct Undo(Vec<Box<dyn FnOnce()>>);

impl Undo {
    fn push(&mut self, f: impl FnOnce() + 'static) {
        self.0.push(Box::new(f));
    }
    fn run(&mut self) {
        while let Some(f) = self.0.pop() {
            f();
        }
    }
    fn disarm(&mut self) {
        self.0.clear();
    }
}

fn pipe() -> Result<(File, File)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::sys("pipe", e.into()))?;
    Ok((File::from(r), File::from(w)))
}

/// Validates `id` for use as a directory and cgroup name.
pub fn validate_id(id: &str) -> Result<()> {
    if id.is_empty()
        || id.len() > 1024
        || id.starts_with('.')
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(Error::InvalidArgument {
            name: "id".into(),
            msg: format!("{id:?} must be non-empty [A-Za-z0-9_.-] not starting with '.'"),
        });
    }
    Ok(())
}

/// Creates the container; on error everything it made is gone again.
pub fn create(opts: &CreateOptions) -> Result<Created> {
    let mut undo = Undo(Vec::new());
    let r = create_inner(opts, &mut undo);
    match r {
        Ok(c) => {
            undo.disarm();
            Ok(c)
        }
        Err(e) => {
            undo.run();
            Err(e)
        }
    }
}

fn create_inner(opts: &CreateOptions, undo: &mut Undo) -> Result<Created> {
    validate_id(&opts.id)?;
    let bundle = std::fs::canonicalize(&opts.bundle).map_err(|e| Error::io(&opts.bundle, e))?;
    let vs = spec::load_bundle(&bundle)?;
    let spec = &vs.spec;
    let linux = spec.linux().clone().unwrap_or_default();
    let process = spec.process().clone().unwrap_or_default();

    if opts.state_dir.join(STATE_FILE).exists() {
        return Err(Error::InvalidArgument {
            name: "state-dir".into(),
            msg: format!("{} already holds a container", opts.state_dir.display()),
        });
    }
    let made_dir = !opts.state_dir.exists();
    std::fs::create_dir_all(&opts.state_dir).map_err(|e| Error::io(&opts.state_dir, e))?;
    {
        let dir = opts.state_dir.clone();
        undo.push(move || {
            if made_dir {
                let _ = std::fs::remove_dir_all(&dir);
            } else {
                for f in [FIFO_FILE, STATE_FILE, state::ATTACH_SOCKET] {
                    let _ = std::fs::remove_file(dir.join(f));
                }
            }
        });
    }

    let layout = cgroups::detect_layout(&opts.cgroup_root)?;
    let cg_value = linux
        .cgroups_path()
        .as_ref()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let cg_rel = cgroups::parse_cgroups_path(&cg_value, &opts.id)
        .map_err(|m| Error::spec("linux.cgroupsPath", m))?;
    let cgroup = cgroups::manager(layout, &opts.cgroup_root, &cg_rel);
    // The cgroup is made after the clone, while the init starts its set-up, but
    // its undo goes first so that a rollback reaps the init before the rmdir.
    // It does nothing to a cgroup this create never got to.
    let cg_touched = Rc::new(Cell::new(false));
    {
        let cg = cgroups::manager(layout, &opts.cgroup_root, &cg_rel);
        let touched = cg_touched.clone();
        undo.push(move || {
            if !touched.get() {
                return;
            }
            for pid in cg.pids().unwrap_or_default() {
                let _ = process::kill(pid, libc::SIGKILL);
            }
            let _ = cg.remove();
        });
    }
    // Device rules go in after the init has made its device nodes (the rules
    // also govern mknod), but before it can exec anything.
    let mut resources = linux.resources().clone();
    let device_rules = resources
        .as_mut()
        .and_then(|r| r.devices_mut().take())
        .filter(|d| !d.is_empty());

    // stdio
    let terminal = process.terminal() == Some(true);
    let devnull = File::open("/dev/null").map_err(|e| Error::io("/dev/null", e))?;
    // With a terminal the init opens the pty from the container's devpts and
    // sends its master with `ready`; until then there is no monitor side.
    let (monitor_pipes, child_stdio, _child_ends): (
        Option<MonitorStdio>,
        ChildStdio,
        Vec<OwnedFd>,
    ) = if terminal {
        (None, ChildStdio::Terminal, vec![])
    } else {
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let (stdin_w, stdin_r): (Option<File>, OwnedFd) = if opts.stdin {
            let (r, w) = pipe()?;
            (Some(w), r.into())
        } else {
            (
                None,
                devnull
                    .try_clone()
                    .map_err(|e| Error::io("/dev/null", e))?
                    .into(),
            )
        };
        let cs = ChildStdio::Pipes {
            stdin: stdin_r.as_raw_fd(),
            stdout: out_w.as_raw_fd(),
            stderr: err_w.as_raw_fd(),
        };
        (
            Some(MonitorStdio::Pipes {
                stdin: stdin_w,
                stdout: out_r,
                stderr: err_r,
            }),
            cs,
            vec![stdin_r, out_w.into(), err_w.into()],
        )
    };

    let fifo = opts.state_dir.join(FIFO_FILE);
    let _ = std::fs::remove_file(&fifo);
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .map_err(|e| Error::sys(format!("mkfifo {}", fifo.display()), e.into()))?;
    let fifo_ends = init::open_fifo(&fifo)?;

    // Namespaces.
    let mut clone_flags = 0;
    let mut new_cgroupns = false;
    let mut new_userns = false;
    let mut join_mnt: Option<File> = None;
    // The pod's user namespace: joined by the init only (module doc of
    // `userns`); the monitor stays root of the host.
    let mut join_user: Option<File> = None;
    // A pid namespace joined by path: with a user namespace, joined by the
    // helper that clones the init (see below), never by the monitor.
    let mut join_pid: Option<(usize, File)> = None;
    for (i, ns) in linux.namespaces().iter().flatten().enumerate() {
        let t = ns.typ();
        match ns.path() {
            None => match t {
                LinuxNamespaceType::Cgroup => new_cgroupns = true,
                LinuxNamespaceType::User => {
                    new_userns = true;
                    clone_flags |= ns_flag(t);
                }
                _ => clone_flags |= ns_flag(t),
            },
            Some(p) => {
                let f = File::open(p).map_err(|e| {
                    Error::spec(
                        format!("linux.namespaces[{i}].path"),
                        format!("{}: {e}", p.display()),
                    )
                })?;
                if t == LinuxNamespaceType::Mount {
                    join_mnt = Some(f);
                } else if t == LinuxNamespaceType::User {
                    join_user = Some(f);
                } else if t == LinuxNamespaceType::Pid {
                    join_pid = Some((i, f));
                } else {
                    LinuxSyscall.setns(f.as_raw_fd(), ns_flag(t)).map_err(|e| {
                        Error::spec(
                            format!("linux.namespaces[{i}].path"),
                            format!("setns {}: {e}", p.display()),
                        )
                    })?;
                }
            }
        }
    }
    // The init reads the host's cgroup mounts itself, off this critical path.
    // Without a user namespace the monitor joins the pid namespace itself (its
    // next child lands there). With one, the helper does: a helper living in
    // the joined pid namespace would report the init's pid as seen there,
    // not the host's.
    if let (Some((i, f)), None) = (&join_pid, &join_user) {
        LinuxSyscall
            .setns(f.as_raw_fd(), libc::CLONE_NEWPID)
            .map_err(|e| {
                Error::spec(format!("linux.namespaces[{i}].path"), format!("setns: {e}"))
            })?;
    }
    let mut host = HostInfo::new(new_userns || join_user.is_some(), terminal);
    let mount_fds = userns::open_mount_sources(spec, join_user.as_ref())?;
    host.mount_fds = mount_fds
        .iter()
        .map(|(i, fd)| (*i, fd.as_raw_fd()))
        .collect();
    let rootfs_fd = match &join_user {
        Some(_) => Some(userns::open_rootfs(&vs.rootfs)?),
        None => None,
    };
    let seccomp = match linux.seccomp() {
        Some(s) => Some(seccomp_cache::build(s, opts.seccomp_cache.as_deref())?),
        None => None,
    };

    let (sync_parent, sync_child) = UnixStream::pair().map_err(|e| Error::sys("socketpair", e))?;
    let cloned = match &join_user {
        Some(ns) => crate::sys::idmap::clone_into_userns(
            ns.as_raw_fd(),
            join_pid.as_ref().map(|(_, f)| f.as_raw_fd()),
            clone_flags,
        ),
        None => process::clone_with_flags(clone_flags),
    };
    let pid = match cloned
        .map_err(|e| Error::sys(format!("clone with namespaces {clone_flags:#x}"), e))?
    {
        Fork::Child => {
            drop(sync_parent);
            init::run(InitArgs {
                spec,
                rootfs: &vs.rootfs,
                stdio: child_stdio,
                sync: &sync_child,
                fifo: fifo_ends,
                join_mnt: join_mnt.as_ref().map(|f| f.as_raw_fd()),
                rootfs_fd: rootfs_fd.as_ref(),
                new_cgroupns,
                host,
                security: opts.security,
                seccomp: seccomp.as_ref(),
            })
        }
        Fork::Parent(pid) => pid,
    };
    drop(sync_child);
    drop(_child_ends);
    drop(fifo_ends);
    drop(devnull);
    drop(mount_fds);
    drop(rootfs_fd);
    undo.push(move || {
        let _ = process::kill(pid, libc::SIGKILL);
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    });

    // While the init sets itself up: its id maps and cgroup, which it needs
    // before "go" (see the module doc).
    let placed = (|| {
        if new_userns {
            write_id_maps(pid, &linux)?;
        }
        cg_touched.set(true);
        cgroup.create()?;
        if let Some(res) = &resources {
            cgroup.apply(res)?;
        }
        cgroup.add_pid(pid)?;
        if join_user.is_some() {
            userns::chown_cgroup(&*cgroup, pid)?;
            userns::set_oom_score_adj(pid, &process, opts.security.restrict_oom_score_adj)?;
        }
        Ok(())
    })();
    // An init that failed early may be why the cgroup write failed: its
    // message names the real cause.
    placed.map_err(|e| init_failure(&sync_parent).unwrap_or(e))?;
    let oom_baseline = cgroup.oom_kills().unwrap_or(0);
    init::send_line(&sync_parent, "go").map_err(|e| {
        init_failure(&sync_parent).unwrap_or_else(|| Error::sys("write sync socket", e))
    })?;

    // Still while the init works: the state file and the attach socket.
    let exited = || {
        init_failure(&sync_parent)
            .unwrap_or_else(|| Error::Init("container init exited during set-up".into()))
    };
    let pid_start_time = state::pid_start_time(pid).ok_or_else(exited)?;
    let me = process::getpid();
    let st = StateFile {
        version: STATE_VERSION,
        id: opts.id.clone(),
        pid,
        pid_start_time,
        monitor_pid: me,
        monitor_start_time: state::pid_start_time(me).unwrap_or(0),
        created_at: crate::timefmt::now_nanos(),
        bundle,
        rootfs: vs.rootfs.clone(),
        cgroup_layout: layout,
        cgroup_root: opts.cgroup_root.clone(),
        cgroup_path: cg_rel,
        terminal,
    };
    let sock = opts.state_dir.join(state::ATTACH_SOCKET);
    let _ = std::fs::remove_file(&sock);
    let attach = std::os::unix::net::UnixListener::bind(&sock).map_err(|e| Error::io(&sock, e))?;
    attach
        .set_nonblocking(true)
        .map_err(|e| Error::io(&sock, e))?;
    let json = serde_json::to_vec_pretty(&st).map_err(|e| Error::Init(e.to_string()))?;
    // Visible before the container is complete, which is harmless: `start`
    // only wakes an init that is past "done" (see the module doc).
    state::write_atomic(&opts.state_dir.join(STATE_FILE), &json)?;

    let (answer, master) =
        init::read_answer(&sync_parent).map_err(|e| Error::sys("read sync socket", e))?;
    if let Some(msg) = answer.strip_prefix("error ") {
        return Err(Error::Init(msg.to_string()));
    }
    if answer != "ready" {
        return Err(exited());
    }
    let monitor_stdio = match (monitor_pipes, master) {
        (Some(pipes), _) => pipes,
        (None, Some(master)) => {
            if let Some(size) = process.console_size() {
                let _ = process::set_winsize(
                    master.as_raw_fd(),
                    u16::try_from(size.height()).unwrap_or(u16::MAX),
                    u16::try_from(size.width()).unwrap_or(u16::MAX),
                );
            }
            MonitorStdio::Pty {
                master: File::from(master),
            }
        }
        (None, None) => {
            return Err(Error::Init(
                "process.terminal: the init sent no terminal".into(),
            ))
        }
    };
    if let Some(rules) = device_rules {
        let mut res = oci_spec::runtime::LinuxResources::default();
        res.set_devices(Some(rules));
        cgroup.apply(&res)?;
    }
    // Only now may the init exec (once `start` writes the fifo).
    init::send_line(&sync_parent, "done").map_err(|_| exited())?;
    Ok(Created {
        attach,
        state: st,
        stdio: monitor_stdio,
        cgroup,
        oom_baseline,
    })
}

/// The error line of an init that gave up, if it has sent one (never blocks).
fn init_failure(sync: &UnixStream) -> Option<Error> {
    sync.set_nonblocking(true).ok()?;
    let line = init::read_line(sync).ok();
    let _ = sync.set_nonblocking(false);
    line?
        .strip_prefix("error ")
        .map(|m| Error::Init(m.to_string()))
}

fn write_id_maps(pid: i32, linux: &oci_spec::runtime::Linux) -> Result<()> {
    let fmt = |m: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
        m.iter()
            .flatten()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect::<String>()
    };
    for (file, field, maps) in [
        ("uid_map", "linux.uidMappings", fmt(linux.uid_mappings())),
        ("gid_map", "linux.gidMappings", fmt(linux.gid_mappings())),
    ] {
        let path = Path::new("/proc").join(pid.to_string()).join(file);
        std::fs::write(&path, &maps)
            .map_err(|e| Error::spec(field, format!("write {}: {e}", path.display())))?;
    }
    Ok(())
}

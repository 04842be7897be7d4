//! Running an extra process inside a running container (`berth-monitor exec`).
//!
//! Runs in a freshly exec'd, single-threaded helper: joins the container's cgroup
//! and every namespace of its init (user first, mount last), then forks so the
//! child lands in the pid namespace. The child dies with the helper
//! (PR_SET_PDEATHSIG), so killing the helper on an ExecSync timeout kills the
//! exec'd process too. The helper exits with the child's status.

use super::Container;
use crate::error::{Error, Result};
use crate::security::{self, SecurityOptions};
use crate::spec;
use crate::sys::linux::LinuxSyscall;
use crate::sys::process::{self, exit_now, Fork};
use crate::sys::Syscall;
use oci_spec::runtime::Process;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Namespaces joined for exec, in order.
const NAMESPACES: [(&str, i32); 7] = [
    ("user", libc::CLONE_NEWUSER),
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
    ("net", libc::CLONE_NEWNET),
    ("pid", libc::CLONE_NEWPID),
    ("mnt", libc::CLONE_NEWNS),
];

/// Reads and validates an OCI `Process` JSON file.
pub fn load_process(path: &Path) -> Result<Process> {
    let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let raw: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| Error::spec("process", format!("not valid json: {e}")))?;
    spec::validate_raw(&serde_json::json!({ "process": raw }))?;
    let p: Process = serde_json::from_value(raw)
        .map_err(|e| Error::spec("process", format!("not an oci process: {e}")))?;
    spec::validate_process(&p, "process")?;
    Ok(p)
}

/// Runs `process` in the container and returns its exit code (128+signal when
/// killed). Must be called from a single-threaded process.
/// `seccomp_cache`: compiled programs to reuse (see [`crate::seccomp_cache`]).
pub fn exec(
    state_dir: &Path,
    process: &Process,
    tty: bool,
    seccomp_cache: Option<&Path>,
) -> Result<i32> {
    let c = Container::load(state_dir)?;
    let st = c.state()?;
    if st.status != super::Status::Running {
        return Err(Error::BadState {
            id: c.id().to_string(),
            op: "exec in",
            status: st.status.to_string(),
        });
    }
    let pid = c.pid();
    // Open all namespace files first: after joining the mount namespace the
    // host's /proc is out of reach.
    let mut fds = Vec::new();
    for (name, flag) in NAMESPACES {
        let theirs = format!("/proc/{pid}/ns/{name}");
        let mine = format!("/proc/self/ns/{name}");
        let (Ok(t), Ok(m)) = (std::fs::metadata(&theirs), std::fs::metadata(&mine)) else {
            continue;
        };
        if t.ino() == m.ino() && t.dev() == m.dev() {
            continue;
        }
        let f = File::open(&theirs).map_err(|e| Error::io(&theirs, e))?;
        fds.push((name, flag, f));
    }
    if !super::state::is_alive(pid, c.state_file().pid_start_time) {
        return Err(Error::BadState {
            id: c.id().to_string(),
            op: "exec in",
            status: "stopped".into(),
        });
    }
    // The container's seccomp profile applies to exec'd processes too.
    let filter = match spec_seccomp(&c.state_file().bundle)? {
        Some(s) => Some(crate::seccomp_cache::build(&s, seccomp_cache)?),
        None => None,
    };
    let me = process::getpid().to_string();
    for procs in c.cgroup().procs_files() {
        crate::cgroups::write(&procs, &me)?;
    }
    for (name, flag, f) in &fds {
        LinuxSyscall
            .setns(f.as_raw_fd(), *flag)
            .map_err(|e| Error::sys(format!("setns into {name} namespace of pid {pid}"), e))?;
    }
    let userns = fds.iter().any(|(name, _, _)| *name == "user");
    drop(fds);
    // In the container's mount namespace now: its /dev/ptmx is its own devpts.
    let console = if tty {
        super::exec_tty::open_container_pty()
    } else {
        None
    };
    if tty && console.is_none() {
        super::exec_tty::cook_host_terminal();
    }
    let relay_sigs = match console {
        Some(_) => Some(super::exec_tty::block_relay_signals()?),
        None => None,
    };

    let (mut err_r, err_w) = {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| Error::sys("pipe", e.into()))?;
        (File::from(r), File::from(w))
    };
    // The helper holds the write end until it dies and never writes: the
    // child sees a hang-up on the read end once the helper is gone.
    let (alive_r, alive_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::sys("pipe", e.into()))?;
    match process::fork().map_err(|e| Error::sys("fork", e))? {
        Fork::Child => {
            drop(err_r);
            drop(alive_w);
            let r = match &console {
                Some(pty) => use_console(&pty.slave)
                    .and_then(|()| child(process, tty, &alive_r, userns, filter.as_ref())),
                None => child(process, tty, &alive_r, userns, filter.as_ref()),
            };
            let msg = match r {
                Ok(never) => match never {},
                Err(e) => e.to_string(),
            };
            let mut w = err_w;
            let _ = w.write_all(msg.as_bytes());
            exit_now(127)
        }
        Fork::Parent(child_pid) => {
            drop(err_w);
            drop(alive_r);
            // Kept open until this helper exits (see above).
            let _alive = alive_w;
            let mut msg = String::new();
            let _ = err_r.read_to_string(&mut msg);
            let status = match (console, relay_sigs) {
                (Some(pty), Some(sigs)) if msg.is_empty() => {
                    drop(pty.slave);
                    super::exec_tty::relay(pty.master, child_pid, sigs)?
                }
                _ => wait_code(child_pid)?,
            };
            if !msg.is_empty() {
                return Err(Error::Init(msg));
            }
            Ok(status)
        }
    }
}

/// Makes the container pty's slave the child's stdin, stdout and stderr.
fn use_console(slave: &std::os::fd::OwnedFd) -> Result<()> {
    process::dup_to_stdio(slave.as_raw_fd())
        .map_err(|e| Error::sys("--tty: dup2 container pty to stdio", e))
}

fn spec_seccomp(bundle: &Path) -> Result<Option<oci_spec::runtime::LinuxSeccomp>> {
    let path = bundle.join("config.json");
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let spec: oci_spec::runtime::Spec =
        serde_json::from_slice(&text).map_err(|e| Error::spec("config.json", e.to_string()))?;
    Ok(spec.linux().as_ref().and_then(|l| l.seccomp().clone()))
}

fn wait_code(pid: i32) -> Result<i32> {
    use nix::sys::wait::{waitpid, WaitStatus};
    loop {
        match waitpid(nix::unistd::Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::sys(format!("wait for exec'd pid {pid}"), e.into())),
        }
    }
}

enum Never {}

fn child(
    p: &Process,
    tty: bool,
    alive: &std::os::fd::OwnedFd,
    userns: bool,
    filter: Option<&crate::sys::seccomp::Filter>,
) -> Result<Never> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(|e| Error::sys("prctl(PR_SET_PDEATHSIG)", e.into()))?;
    // The helper may have died between fork and prctl. getppid() cannot tell:
    // the helper lives outside the container's pid namespace, so the parent
    // reads as 0 before and after it died (an orphan goes to a reaper outside
    // too). The pipe can: once the helper is gone its write end is closed.
    if process::hung_up(alive) {
        exit_now(137);
    }
    if tty {
        nix::unistd::setsid().map_err(|e| Error::sys("setsid", e.into()))?;
        process::set_controlling_tty(0).map_err(|e| Error::sys("--tty: TIOCSCTTY on stdin", e))?;
    }
    let sys = LinuxSyscall;
    security::set_oom_score_adj(
        &sys,
        p,
        "process",
        SecurityOptions {
            restrict_oom_score_adj: true,
        },
    )?;
    let exe = security::resolve_executable(p, "process")?;
    security::set_rlimits(&sys, p, "process")?;
    sys.chdir(p.cwd())
        .map_err(|e| Error::sys(format!("process.cwd: chdir {}", p.cwd().display()), e))?;
    let setgroups_allowed = !userns
        || std::fs::read_to_string("/proc/self/setgroups")
            .map(|s| s.trim() == "allow")
            .unwrap_or(true);
    security::set_apparmor(&sys, p, "process")?;
    security::set_selinux_label(&sys, p, "process")?;
    security::set_identity(&sys, p, filter, "process", setgroups_allowed)?;
    process::reset_signals();
    let argv = p.args().clone().unwrap_or_default();
    let env = p.env().clone().unwrap_or_default();
    let e = sys.execve(&exe, &argv, &env);
    Err(Error::sys(
        format!("process.args[0]: exec {}", exe.display()),
        e,
    ))
}

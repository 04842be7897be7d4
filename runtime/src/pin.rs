//! Pod namespaces without a pause process: unshare the requested namespaces,
//! configure them, and bind-mount `/proc/thread-self/ns/<ns>` onto `<dir>/<ns>`;
//! the mount keeps each namespace alive after the unsharing task is gone.
//! Containers join them via `linux.namespaces[].path`.
//!
//! Net, IPC and UTS namespaces belong to a thread, not a process, so berthd
//! pins them from a short-lived thread of its own ([`pin_namespaces_in_thread`])
//! instead of paying for a process. A shared pid namespace needs a living init,
//! so it goes through `berth-monitor pin-ns --pid` ([`pin_namespaces`] in a
//! fresh process).
//!
//! A pod with its own user namespace (`uid_maps`/`gid_maps` set) also goes
//! through `berth-monitor pin-ns`: unsharing a user namespace needs a
//! single-threaded caller. A child of the monitor unshares it, the monitor
//! writes its maps from outside (see [`crate::sys::idmap`]), and the child,
//! now root in it, unshares the net/IPC/UTS (and pid) namespaces, so the
//! kernel records the pod's user namespace as their owner: the pod's root
//! may configure them, the host's namespaces stay out of its reach. The
//! monitor binds the child's `ns/user`, `ns/net`, … onto `<dir>/` and lets it
//! exit.

use crate::error::{Error, Result};
use crate::idmap::{check_maps, map_text, IdMap};
use crate::sys::linux::LinuxSyscall;
use crate::sys::Syscall;
use std::path::{Path, PathBuf};

/// Namespace file names that can be pinned, with their clone flag.
pub const PINNABLE: [(&str, i32); 3] = [
    ("net", libc::CLONE_NEWNET),
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
];

/// What to pin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PinOptions {
    pub dir: PathBuf,
    pub net: bool,
    pub ipc: bool,
    pub uts: bool,
    /// Also create a pid namespace, kept alive by a tiny init
    /// (`berth-monitor __pause`) whose pid is recorded in `<dir>/pause.pid`.
    pub pid: bool,
    pub hostname: Option<String>,
    pub sysctls: Vec<(String, String)>,
    /// A user namespace for the pod with these maps (both or neither), owning
    /// the other namespaces pinned here; pinned at `<dir>/user`.
    pub uid_maps: Vec<IdMap>,
    pub gid_maps: Vec<IdMap>,
}

impl PinOptions {
    /// Whether the pod gets a user namespace of its own.
    pub fn userns(&self) -> bool {
        !self.uid_maps.is_empty() || !self.gid_maps.is_empty()
    }
}

fn check(o: &PinOptions) -> Result<()> {
    if !(o.net || o.ipc || o.uts || o.pid) {
        return Err(Error::InvalidArgument {
            name: "pin-ns".into(),
            msg: "at least one of --net, --ipc, --uts, --pid is required".into(),
        });
    }
    if o.userns() {
        for (name, maps) in [("--uid-map", &o.uid_maps), ("--gid-map", &o.gid_maps)] {
            if let Some(msg) = check_maps(maps) {
                return Err(Error::InvalidArgument {
                    name: name.into(),
                    msg,
                });
            }
        }
    }
    if o.hostname.is_some() && !o.uts {
        return Err(Error::InvalidArgument {
            name: "--hostname".into(),
            msg: "needs --uts".into(),
        });
    }
    for (k, _) in &o.sysctls {
        let ok = if k.starts_with("net.") {
            o.net
        } else if k.starts_with("kernel.shm")
            || k.starts_with("kernel.msg")
            || k == "kernel.sem"
            || k.starts_with("fs.mqueue.")
        {
            o.ipc
        } else {
            false
        };
        if !ok || k.contains('/') || k.contains("..") {
            return Err(Error::InvalidArgument {
                name: format!("--sysctl {k}"),
                msg: "not a sysctl of a pinned namespace (net.* needs --net; kernel.shm*/msg*/sem, fs.mqueue.* need --ipc)".into(),
            });
        }
    }
    Ok(())
}

/// Pins net/IPC/UTS namespaces from a thread spawned for it and joined before
/// returning: the unshare changes only that thread, whose exit leaves the bind
/// mounts as the namespaces' only references. Safe in a multi-threaded process
/// (berthd). On failure nothing is left mounted or created. `o.pid` is refused:
/// a pid namespace needs a process ([`pin_namespaces`] via `berth-monitor pin-ns`).
pub fn pin_namespaces_in_thread(o: &PinOptions) -> Result<()> {
    if o.pid || o.userns() {
        return Err(Error::InvalidArgument {
            name: "pid".into(),
            msg: "a pid or user namespace needs its own process: use berth-monitor pin-ns".into(),
        });
    }
    let o = o.clone();
    // A thread of its own, never a pooled one: it leaves with the namespaces.
    std::thread::Builder::new()
        .name("berth-pin-ns".into())
        .spawn(move || pin_namespaces(&o))
        .map_err(|e| Error::sys("spawn namespace pinning thread", e))?
        .join()
        .map_err(|_| Error::Init("namespace pinning thread panicked".into()))?
}

/// Unshares, configures and pins, in the calling thread: call from a fresh
/// single-threaded process, or through [`pin_namespaces_in_thread`].
/// On failure nothing is left mounted or created.
pub fn pin_namespaces(o: &PinOptions) -> Result<()> {
    check(o)?;
    let made_dir = !o.dir.exists();
    std::fs::create_dir_all(&o.dir).map_err(|e| Error::io(&o.dir, e))?;
    let r = if o.userns() {
        pin_in_userns(o)
    } else {
        pin_inner(o)
    };
    if r.is_err() {
        let _ = unpin_namespaces(&o.dir);
        if !made_dir {
            // unpin removed the dir it did not create; put it back empty.
            let _ = std::fs::create_dir_all(&o.dir);
        }
    }
    r
}

fn pin_inner(o: &PinOptions) -> Result<()> {
    let sys = LinuxSyscall;
    let wanted: Vec<(&str, i32)> = PINNABLE
        .iter()
        .copied()
        .filter(|(n, _)| match *n {
            "net" => o.net,
            "ipc" => o.ipc,
            _ => o.uts,
        })
        .collect();
    for name in wanted.iter().map(|(n, _)| *n).chain(o.pid.then_some("pid")) {
        if o.dir.join(name).exists() {
            return Err(Error::InvalidArgument {
                name: "--dir".into(),
                msg: format!("{} already exists", o.dir.join(name).display()),
            });
        }
    }
    let flags = wanted.iter().fold(0, |f, (_, fl)| f | fl);
    sys.unshare(flags)
        .map_err(|e| Error::sys(format!("unshare {flags:#x}"), e))?;
    if let Some(h) = &o.hostname {
        sys.sethostname(h)
            .map_err(|e| Error::sys(format!("--hostname: sethostname {h}"), e))?;
    }
    if o.net {
        crate::sys::process::loopback_up().map_err(|e| Error::sys("bring up lo", e))?;
    }
    for (k, v) in &o.sysctls {
        let path = Path::new("/proc/sys").join(k.replace('.', "/"));
        sys.write_file(&path, v)
            .map_err(|e| Error::sys(format!("--sysctl {k}={v}"), e))?;
    }
    if o.pid {
        start_pause(&o.dir)?;
    }
    for (name, _) in &wanted {
        let target = o.dir.join(name);
        sys.create_file(&target)
            .map_err(|e| Error::io(&target, e))?;
        // thread-self, not self: in a multi-threaded caller /proc/self/ns is
        // the main thread's, which did not unshare.
        let src = PathBuf::from(format!("/proc/thread-self/ns/{name}"));
        sys.mount(Some(&src), &target, None, libc::MS_BIND, None)
            .map_err(|e| {
                Error::sys(format!("bind {} on {}", src.display(), target.display()), e)
            })?;
    }
    Ok(())
}

/// File holding `<pid> <start time>` of the pid namespace's init.
pub const PAUSE_FILE: &str = "pause.pid";

// The pid namespace needs a living init: fork one into a new pid namespace and
// have it exec `berth-monitor __pause` (a fresh image keeps it small). Its
// namespaces (net/ipc/uts just created here) are inherited.
fn start_pause(dir: &Path) -> Result<()> {
    let pid = spawn_pause(dir)?;
    record_pause(dir, pid)
}

/// Unshares a pid namespace and forks its init, which execs the pause image;
/// returns the init's pid once the exec succeeded.
fn spawn_pause(dir: &Path) -> Result<i32> {
    use crate::sys::process::{self, Fork};
    let sys = LinuxSyscall;
    sys.unshare(libc::CLONE_NEWPID)
        .map_err(|e| Error::sys("unshare pid namespace", e))?;
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::sys("pipe", e.into()))?;
    match process::fork().map_err(|e| Error::sys("fork pause process", e))? {
        Fork::Child => {
            drop(r);
            let _ = nix::unistd::setsid();
            process::stdio_to_dev_null();
            let _ = std::env::set_current_dir("/");
            // The pin dir on the command line says which pod this init serves
            // (for operators, and for cleanup that looks for a dir's processes).
            let e = process::exec_image(
                "berth-monitor-serve",
                crate::monitor::SERVE_BIN,
                &crate::monitor::serve_args::ServeCommand::Pause {
                    dir: dir.as_os_str().as_encoded_bytes().to_vec(),
                }
                .encode(),
                &dir.join(crate::monitor::SERVE_FALLBACK_FILE),
            );
            let mut w = std::fs::File::from(w);
            let _ = std::io::Write::write_all(&mut w, e.to_string().as_bytes());
            process::exit_now(127)
        }
        Fork::Parent(pid) => {
            drop(w);
            let mut msg = String::new();
            let _ = std::io::Read::read_to_string(&mut std::fs::File::from(r), &mut msg);
            if !msg.is_empty() {
                let _ = process::kill(pid, libc::SIGKILL);
                let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
                return Err(Error::Init(format!("exec pause process: {msg}")));
            }
            Ok(pid)
        }
    }
}

/// Writes the pause file and pins the pause init's pid namespace (from the
/// host's side: the bind needs privilege over the host's mount namespace).
fn record_pause(dir: &Path, pid: i32) -> Result<()> {
    let sys = LinuxSyscall;
    let start = crate::container::state::pid_start_time(pid).unwrap_or(0);
    let file = dir.join(PAUSE_FILE);
    crate::container::state::write_atomic(&file, format!("{pid} {start}\n").as_bytes())?;
    let target = dir.join("pid");
    sys.create_file(&target)
        .map_err(|e| Error::io(&target, e))?;
    let src = PathBuf::from(format!("/proc/{pid}/ns/pid"));
    sys.mount(Some(&src), &target, None, libc::MS_BIND, None)
        .map_err(|e| Error::sys(format!("bind {} on {}", src.display(), target.display()), e))?;
    Ok(())
}

/// [`pin_namespaces`] for a pod with its own user namespace (module doc).
fn pin_in_userns(o: &PinOptions) -> Result<()> {
    let sys = LinuxSyscall;
    let wanted: Vec<(&str, i32)> = PINNABLE
        .iter()
        .copied()
        .filter(|(n, _)| match *n {
            "net" => o.net,
            "ipc" => o.ipc,
            _ => o.uts,
        })
        .collect();
    for name in wanted
        .iter()
        .map(|(n, _)| *n)
        .chain(o.pid.then_some("pid"))
        .chain(["user"])
    {
        if o.dir.join(name).exists() {
            return Err(Error::InvalidArgument {
                name: "--dir".into(),
                msg: format!("{} already exists", o.dir.join(name).display()),
            });
        }
    }
    let flags = wanted.iter().fold(0, |f, (_, fl)| f | fl);
    // Runs in the child, root of the new user namespace.
    let work = || -> std::result::Result<String, String> {
        let sys = LinuxSyscall;
        sys.unshare(flags)
            .map_err(|e| format!("unshare {flags:#x} in the pod's user namespace: {e}"))?;
        if let Some(h) = &o.hostname {
            sys.sethostname(h)
                .map_err(|e| format!("--hostname: sethostname {h}: {e}"))?;
        }
        if o.net {
            crate::sys::process::loopback_up().map_err(|e| format!("bring up lo: {e}"))?;
        }
        for (k, v) in &o.sysctls {
            let path = Path::new("/proc/sys").join(k.replace('.', "/"));
            sys.write_file(&path, v)
                .map_err(|e| format!("--sysctl {k}={v}: {e}"))?;
        }
        if o.pid {
            return spawn_pause(&o.dir)
                .map(|pid| pid.to_string())
                .map_err(|e| e.to_string());
        }
        Ok(String::new())
    };
    let child =
        crate::sys::idmap::spawn_userns_child(&map_text(&o.uid_maps), &map_text(&o.gid_maps), work)
            .map_err(|e| Error::sys("create the pod's user namespace", e))?;
    let pause: Option<i32> = child.report.parse().ok();
    let pinned = (|| {
        for name in wanted.iter().map(|(n, _)| *n).chain(["user"]) {
            let target = o.dir.join(name);
            sys.create_file(&target)
                .map_err(|e| Error::io(&target, e))?;
            let src = PathBuf::from(format!("/proc/{}/ns/{name}", child.pid));
            sys.mount(Some(&src), &target, None, libc::MS_BIND, None)
                .map_err(|e| {
                    Error::sys(format!("bind {} on {}", src.display(), target.display()), e)
                })?;
        }
        if let Some(pid) = pause {
            record_pause(&o.dir, pid)?;
        }
        Ok(())
    })();
    if pinned.is_err() {
        if let Some(pid) = pause {
            let _ = crate::sys::process::kill(pid, libc::SIGKILL);
        }
    }
    child.finish();
    pinned
}

fn stop_pause(dir: &Path) -> Result<()> {
    let file = dir.join(PAUSE_FILE);
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(&file, e)),
    };
    let mut it = text.split_whitespace().map(|v| v.parse::<u64>().ok());
    if let (Some(Some(pid)), Some(Some(start))) = (it.next(), it.next()) {
        let Ok(pid) = i32::try_from(pid) else {
            return Ok(());
        };
        if let Ok(fd) = crate::sys::process::pidfd_open(pid) {
            if crate::container::state::is_alive(pid, start) {
                let _ = crate::sys::process::pidfd_send_signal(&fd, libc::SIGKILL);
            }
        }
    }
    std::fs::remove_file(&file).map_err(|e| Error::io(&file, e))
}

/// Lazily unmounts and removes pinned namespaces (and stops the pid
/// namespace's init) and the directory. Idempotent.
pub fn unpin_namespaces(dir: &Path) -> Result<()> {
    let sys = LinuxSyscall;
    stop_pause(dir)?;
    let target = dir.join("pid");
    while sys.umount2(&target, libc::MNT_DETACH).is_ok() {}
    match std::fs::remove_file(&target) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&target, e)),
    }
    for name in PINNABLE.iter().map(|(n, _)| *n).chain(["user"]) {
        let target = dir.join(name);
        // Unmount until nothing is stacked there any more.
        while sys.umount2(&target, libc::MNT_DETACH).is_ok() {}
        match std::fs::remove_file(&target) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&target, e)),
        }
    }
    // The pause init's copy of its binary, written only where memfds may
    // not be executed.
    let _ = std::fs::remove_file(dir.join(crate::monitor::SERVE_FALLBACK_FILE));
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(dir, e)),
    }
}

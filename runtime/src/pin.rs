//! Pod namespaces without a pause process: `berth-monitor pin-ns` unshares the
//! requested namespaces in a fresh process, configures them, and bind-mounts
//! `/proc/self/ns/<ns>` onto `<dir>/<ns>`; the mount keeps each namespace alive
//! after the process exits. Containers join them via `linux.namespaces[].path`.

use crate::error::{Error, Result};
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
#[derive(Debug, Clone, Default)]
pub struct PinOptions {
    pub dir: PathBuf,
    pub net: bool,
    pub ipc: bool,
    pub uts: bool,
    pub hostname: Option<String>,
    pub sysctls: Vec<(String, String)>,
}

fn check(o: &PinOptions) -> Result<()> {
    if !(o.net || o.ipc || o.uts) {
        return Err(Error::InvalidArgument {
            name: "pin-ns".into(),
            msg: "at least one of --net, --ipc, --uts is required".into(),
        });
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

/// Unshares, configures and pins. Call from a fresh single-threaded process.
/// On failure nothing is left mounted or created.
pub fn pin_namespaces(o: &PinOptions) -> Result<()> {
    check(o)?;
    let made_dir = !o.dir.exists();
    std::fs::create_dir_all(&o.dir).map_err(|e| Error::io(&o.dir, e))?;
    let r = pin_inner(o);
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
    for (name, _) in &wanted {
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
    for (name, _) in &wanted {
        let target = o.dir.join(name);
        sys.create_file(&target)
            .map_err(|e| Error::io(&target, e))?;
        let src = PathBuf::from(format!("/proc/self/ns/{name}"));
        sys.mount(Some(&src), &target, None, libc::MS_BIND, None)
            .map_err(|e| {
                Error::sys(format!("bind {} on {}", src.display(), target.display()), e)
            })?;
    }
    Ok(())
}

/// Lazily unmounts and removes pinned namespaces and the directory. Idempotent.
pub fn unpin_namespaces(dir: &Path) -> Result<()> {
    let sys = LinuxSyscall;
    for (name, _) in PINNABLE {
        let target = dir.join(name);
        // Unmount until nothing is stacked there any more.
        while sys.umount2(&target, libc::MNT_DETACH).is_ok() {}
        match std::fs::remove_file(&target) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&target, e)),
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(dir, e)),
    }
}

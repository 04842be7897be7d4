//! `/dev`: the tmpfs, the default device nodes and the spec's devices, the
//! standard links and the console.

use super::*;

pub(super) struct Dev {
    path: &'static str,
    major: u64,
    minor: u64,
}

pub(super) const DEFAULT_DEVICES: [Dev; 6] = [
    Dev {
        path: "dev/null",
        major: 1,
        minor: 3,
    },
    Dev {
        path: "dev/zero",
        major: 1,
        minor: 5,
    },
    Dev {
        path: "dev/full",
        major: 1,
        minor: 7,
    },
    Dev {
        path: "dev/random",
        major: 1,
        minor: 8,
    },
    Dev {
        path: "dev/urandom",
        major: 1,
        minor: 9,
    },
    Dev {
        path: "dev/tty",
        major: 5,
        minor: 0,
    },
];

/// One device node to create under the rootfs.
pub(super) struct Node<'a> {
    rel: &'a Path,
    mode: u32,
    major: u64,
    minor: u64,
    owner: Option<(u32, u32)>,
}

pub(super) fn make_device(
    sys: &dyn Syscall,
    host: &HostInfo,
    rootfs: &Path,
    node: Node<'_>,
    field: &str,
) -> Result<()> {
    let Node {
        rel,
        mode,
        major,
        minor,
        owner,
    } = node;
    if host.userns {
        // mknod is refused in a user namespace: bind the host's node instead.
        let target = in_root(sys, rootfs, rel, Some(Kind::File), field)?;
        let host_path = Path::new("/").join(rel);
        return sys
            .mount(Some(&host_path), &target.path, None, MS_BIND, None)
            .map_err(sys_err(format!("{field}: bind {}", host_path.display())));
    }
    // The node is made by name in a directory resolved inside the rootfs;
    // mknod and lchown never follow a final symlink.
    let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
        return Err(Error::spec(
            field,
            format!("{} is not a file path", rel.display()),
        ));
    };
    let dir = in_root(sys, rootfs, parent, Some(Kind::Dir), field)?;
    let dest = dir.path.join(name);
    match sys.mknod(&dest, mode, major, minor) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        r => r.map_err(sys_err(format!("{field}: mknod {}", rel.display())))?,
    }
    if let Some((uid, gid)) = owner {
        sys.lchown(&dest, uid, gid)
            .map_err(sys_err(format!("{field}: chown {}", rel.display())))?;
    }
    Ok(())
}

pub(super) fn setup_dev(
    sys: &dyn Syscall,
    host: &HostInfo,
    rootfs: &Path,
    spec: &Spec,
) -> Result<Option<ContainerPty>> {
    let mounts = spec.mounts().clone().unwrap_or_default();
    let has = |d: &str| mounts.iter().any(|m| m.destination() == Path::new(d));
    if !has("/dev") {
        // The image's own /dev is used as is; creating nodes in a lower layer
        // would be surprising, so only spec devices are added.
    } else {
        for d in DEFAULT_DEVICES {
            make_device(
                sys,
                host,
                rootfs,
                Node {
                    rel: Path::new(d.path),
                    mode: libc::S_IFCHR | 0o666,
                    major: d.major,
                    minor: d.minor,
                    owner: None,
                },
                "linux.devices(default)",
            )?;
        }
        let dev = in_root(
            sys,
            rootfs,
            Path::new("dev"),
            Some(Kind::Dir),
            "mounts(/dev)",
        )?;
        for (link, target) in [
            ("dev/fd", "/proc/self/fd"),
            ("dev/stdin", "/proc/self/fd/0"),
            ("dev/stdout", "/proc/self/fd/1"),
            ("dev/stderr", "/proc/self/fd/2"),
            ("dev/core", "/proc/kcore"),
            ("dev/ptmx", "pts/ptmx"),
        ] {
            let name = link.trim_start_matches("dev/");
            match sys.symlink(Path::new(target), &dev.path.join(name)) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                    return Err(Error::sys(format!("symlink /{link}"), e))
                }
                _ => {}
            }
        }
        if !has("/dev/shm") {
            let shm = in_root(
                sys,
                rootfs,
                Path::new("dev/shm"),
                Some(Kind::Dir),
                "/dev/shm",
            )?;
            sys.mount(
                Some(Path::new("shm")),
                &shm.path,
                Some("tmpfs"),
                MS_NOSUID | MS_NODEV | MS_NOEXEC,
                Some("mode=1777,size=65536k"),
            )
            .map_err(sys_err("mount tmpfs on /dev/shm".to_string()))?;
        }
    }
    // The terminal comes from the container's own devpts instance, so the
    // device the process sees as its tty (and /dev/console) exists in its
    // /dev/pts: `tty`, `ps` and job control work as on a host.
    let pty = if host.terminal {
        let (master, slave) = sys
            .resolve_in_root(rootfs, Path::new("dev/pts/ptmx"), None)
            .and_then(|p| process::open_pty_pair_at(&p.path))
            .map_err(|e| {
                Error::sys(
                    "process.terminal: open /dev/pts/ptmx (a devpts mount at /dev/pts is needed)",
                    e,
                )
            })?;
        let node = std::fs::read_link(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&slave)
        ))
        .map_err(|e| Error::sys("process.terminal: name the pty", e))?;
        let dest = in_root(
            sys,
            rootfs,
            Path::new("dev/console"),
            Some(Kind::File),
            "process.terminal",
        )?;
        sys.mount(Some(&node), &dest.path, None, MS_BIND, None)
            .map_err(sys_err("process.terminal: bind /dev/console".to_string()))?;
        Some(ContainerPty { master, slave })
    } else {
        None
    };
    let devices: Vec<LinuxDevice> = spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().clone())
        .unwrap_or_default();
    for (i, d) in devices.iter().enumerate() {
        let kind = match d.typ() {
            LinuxDeviceType::B => libc::S_IFBLK,
            LinuxDeviceType::P => libc::S_IFIFO,
            _ => libc::S_IFCHR,
        };
        let mode = kind | d.file_mode().unwrap_or(0o666) & 0o7777;
        let rel = d.path().strip_prefix("/").unwrap_or(d.path());
        let owner = Some((d.uid().unwrap_or(0), d.gid().unwrap_or(0)));
        make_device(
            sys,
            host,
            rootfs,
            Node {
                rel,
                mode,
                major: u64::try_from(d.major())
                    .map_err(|_| Error::spec(format!("linux.devices[{i}].major"), "is negative"))?,
                minor: u64::try_from(d.minor())
                    .map_err(|_| Error::spec(format!("linux.devices[{i}].minor"), "is negative"))?,
                owner,
            },
            &format!("linux.devices[{i}]"),
        )?;
    }
    Ok(pty)
}

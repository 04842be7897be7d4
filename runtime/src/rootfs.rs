//! The container's filesystem view: spec mounts, /dev, pivot_root, masked and
//! read-only paths. Runs in the container's new mount namespace, before
//! pivot_root, through [`Syscall`] so the sequence is unit-testable.

use crate::container::exec_tty::ContainerPty;
use crate::error::{Error, Result};
use crate::sys::inroot::Kind;
use crate::sys::process;
use crate::sys::InRoot;
use crate::sys::Syscall;
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount, Spec};
use std::path::{Path, PathBuf};

const MS_RDONLY: u64 = libc::MS_RDONLY;
const MS_NOSUID: u64 = libc::MS_NOSUID;
const MS_NODEV: u64 = libc::MS_NODEV;
const MS_NOEXEC: u64 = libc::MS_NOEXEC;
const MS_REMOUNT: u64 = libc::MS_REMOUNT;
const MS_BIND: u64 = libc::MS_BIND;
const MS_REC: u64 = libc::MS_REC;
const MS_PRIVATE: u64 = libc::MS_PRIVATE;
const MS_SLAVE: u64 = libc::MS_SLAVE;
const MS_SHARED: u64 = libc::MS_SHARED;
const MS_UNBINDABLE: u64 = libc::MS_UNBINDABLE;

/// What one mount option means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountOpt {
    /// Sets (`true`) or clears a `MS_*` flag.
    Flag(bool, u64),
    /// A propagation change applied after the mount.
    Propagation(u64),
    /// Passed to the filesystem in the data string.
    Data,
    /// Accepted and deliberately ignored (runc extensions with no effect here).
    Ignored,
}

/// Parses one `mounts[].options` entry; `None` for unknown options.
pub fn mount_option(o: &str) -> Option<MountOpt> {
    use MountOpt::*;
    Some(match o {
        "defaults" => Flag(false, 0),
        "ro" => Flag(true, MS_RDONLY),
        "rw" => Flag(false, MS_RDONLY),
        "suid" => Flag(false, MS_NOSUID),
        "nosuid" => Flag(true, MS_NOSUID),
        "dev" => Flag(false, MS_NODEV),
        "nodev" => Flag(true, MS_NODEV),
        "exec" => Flag(false, MS_NOEXEC),
        "noexec" => Flag(true, MS_NOEXEC),
        "sync" => Flag(true, libc::MS_SYNCHRONOUS),
        "async" => Flag(false, libc::MS_SYNCHRONOUS),
        "dirsync" => Flag(true, libc::MS_DIRSYNC),
        "remount" => Flag(true, MS_REMOUNT),
        "mand" => Flag(true, libc::MS_MANDLOCK),
        "nomand" => Flag(false, libc::MS_MANDLOCK),
        "atime" => Flag(false, libc::MS_NOATIME),
        "noatime" => Flag(true, libc::MS_NOATIME),
        "diratime" => Flag(false, libc::MS_NODIRATIME),
        "nodiratime" => Flag(true, libc::MS_NODIRATIME),
        "bind" => Flag(true, MS_BIND),
        "rbind" => Flag(true, MS_BIND | MS_REC),
        "relatime" => Flag(true, libc::MS_RELATIME),
        "norelatime" => Flag(false, libc::MS_RELATIME),
        "strictatime" => Flag(true, libc::MS_STRICTATIME),
        "nostrictatime" => Flag(false, libc::MS_STRICTATIME),
        "private" => Propagation(MS_PRIVATE),
        "rprivate" => Propagation(MS_PRIVATE | MS_REC),
        "shared" => Propagation(MS_SHARED),
        "rshared" => Propagation(MS_SHARED | MS_REC),
        "slave" => Propagation(MS_SLAVE),
        "rslave" => Propagation(MS_SLAVE | MS_REC),
        "unbindable" => Propagation(MS_UNBINDABLE),
        "runbindable" => Propagation(MS_UNBINDABLE | MS_REC),
        "newinstance" => Data,
        "tmpcopyup" => Ignored,
        o if o.contains('=') => Data,
        _ => return None,
    })
}

/// Flags, propagation and data string of a mount's options.
pub fn parse_options(opts: &[String]) -> (u64, u64, String) {
    let mut flags = 0;
    let mut prop = 0;
    let mut data = Vec::new();
    for o in opts {
        match mount_option(o) {
            Some(MountOpt::Flag(true, f)) => flags |= f,
            Some(MountOpt::Flag(false, f)) => flags &= !f,
            Some(MountOpt::Propagation(p)) => prop |= p,
            Some(MountOpt::Data) => data.push(o.as_str()),
            Some(MountOpt::Ignored) | None => {}
        }
    }
    (flags, prop, data.join(","))
}

/// A cgroup v1 hierarchy of the host: its directory name and mount options.
#[derive(Debug, Clone)]
pub struct CgroupHierarchy {
    pub name: String,
    pub options: String,
}

/// Host facts the rootfs setup needs, gathered before any namespace change.
#[derive(Debug, Clone, Default)]
pub struct HostInfo {
    /// v1 hierarchies under /sys/fs/cgroup; empty on a pure v2 host.
    pub cgroup_v1: Vec<CgroupHierarchy>,
    /// Whether a cgroup2 tree exists (the root on v2, `unified` on hybrid).
    pub cgroup_v2_dir: Option<String>,
    /// Whether the container has its own user namespace (no mknod then).
    pub userns: bool,
    /// `process.terminal`: open a pty of the container's devpts for its stdio
    /// and bind its slave onto /dev/console.
    pub terminal: bool,
    /// Bind mounts whose source the monitor already opened as a detached
    /// mount (id-mapped, or for a container in a joined user namespace whose
    /// root cannot reach berthd's 0700 directories): `(mounts index, fd)`.
    /// They are attached with move_mount instead of bound by path.
    pub mount_fds: Vec<(usize, std::os::fd::RawFd)>,
}

impl HostInfo {
    /// Host facts without the cgroup mounts (see [`HostInfo::read_cgroup_mounts`]).
    pub fn new(userns: bool, terminal: bool) -> Self {
        HostInfo {
            userns,
            terminal,
            ..Default::default()
        }
    }

    /// Fills in the cgroup mounts from the calling process's mountinfo. Only
    /// a spec with a cgroup mount needs them; mountinfo is long on a busy node.
    pub fn read_cgroup_mounts(&mut self) {
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for line in text.lines() {
            let Some((pre, post)) = line.split_once(" - ") else {
                continue;
            };
            let mountpoint = pre.split(' ').nth(4).unwrap_or("");
            let mut post = post.split(' ');
            let fstype = post.next().unwrap_or("");
            let superopts = post.nth(1).unwrap_or("");
            let Some(rest) = mountpoint.strip_prefix("/sys/fs/cgroup") else {
                continue;
            };
            let name = rest.trim_start_matches('/').to_string();
            match fstype {
                "cgroup" if !name.is_empty() && !name.contains('/') => {
                    let options = superopts
                        .split(',')
                        .filter(|o| !matches!(*o, "rw" | "ro"))
                        .collect::<Vec<_>>()
                        .join(",");
                    self.cgroup_v1.push(CgroupHierarchy { name, options });
                }
                "cgroup2" => self.cgroup_v2_dir = Some(name),
                _ => {}
            }
        }
    }
}

/// Decodes the octal escapes (`\040` for a space) of a mountinfo field.
fn unescape_mountinfo(field: &str) -> PathBuf {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(out))
}

/// The mount that holds a path: where it is mounted and how it propagates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldingMount {
    /// Its mount point.
    pub point: PathBuf,
    /// In a peer group (`shared:N`): mounts and unmounts under it reach the peers.
    pub shared: bool,
    /// A slave (`master:N`): receives what its master's peer group mounts.
    pub slave: bool,
}

/// The mount holding the absolute, symlink-free `path` according to the
/// mountinfo `text`: the longest mount point above it, the top one of a stack.
pub fn holding_mount(text: &str, path: &Path) -> HoldingMount {
    let mut best = HoldingMount {
        point: PathBuf::from("/"),
        shared: false,
        slave: false,
    };
    let mut best_len = 0;
    for line in text.lines() {
        let Some((pre, _)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = pre.split(' ').collect();
        let Some(mp) = fields.get(4) else {
            continue;
        };
        let mp = unescape_mountinfo(mp);
        let len = mp.components().count();
        if path.starts_with(&mp) && len >= best_len {
            let optional = fields.get(6..).unwrap_or_default();
            best = HoldingMount {
                point: mp,
                shared: optional.iter().any(|f| f.starts_with("shared:")),
                slave: optional.iter().any(|f| f.starts_with("master:")),
            };
            best_len = len;
        }
    }
    best
}

/// The mount holding `path` in this process's mount namespace.
pub fn mount_of(path: &Path) -> HoldingMount {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    holding_mount(&text, &path)
}

/// Whether a spec mounts cgroupfs (and so needs [`HostInfo::read_cgroup_mounts`]).
pub fn mounts_cgroupfs(spec: &Spec) -> bool {
    spec.mounts()
        .iter()
        .flatten()
        .any(|m| matches!(m.typ().as_deref(), Some("cgroup" | "cgroup2")))
}

fn sys_err(op: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::sys(op, e)
}

/// Resolves `rel` inside the rootfs (creating it as `kind`), naming the
/// field and path in the error.
fn in_root(
    sys: &dyn Syscall,
    rootfs: &Path,
    rel: &Path,
    kind: Option<Kind>,
    field: &str,
) -> Result<InRoot> {
    sys.resolve_in_root(rootfs, rel, kind)
        .map_err(sys_err(format!(
            "{field}: resolve {} in the rootfs",
            rel.display()
        )))
}

/// Mounts cgroupfs at `dest` (a path inside the rootfs). Each sub-directory
/// is resolved afresh, after the tmpfs above it is mounted.
fn mount_cgroup(
    sys: &dyn Syscall,
    host: &HostInfo,
    rootfs: &Path,
    dest: &Path,
    flags: u64,
    field: &str,
) -> Result<()> {
    let base = flags & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC);
    let target = in_root(sys, rootfs, dest, Some(Kind::Dir), field)?;
    if host.cgroup_v1.is_empty() {
        return sys
            .mount(
                Some(Path::new("cgroup2")),
                &target.path,
                Some("cgroup2"),
                base,
                None,
            )
            .map_err(sys_err(format!(
                "{field}: mount cgroup2 on {}",
                dest.display()
            )));
    }
    sys.mount(
        Some(Path::new("tmpfs")),
        &target.path,
        Some("tmpfs"),
        MS_NOSUID | MS_NODEV | MS_NOEXEC,
        Some("mode=755"),
    )
    .map_err(sys_err(format!(
        "{field}: mount tmpfs on {}",
        dest.display()
    )))?;
    for h in &host.cgroup_v1 {
        let d = dest.join(&h.name);
        let t = in_root(sys, rootfs, &d, Some(Kind::Dir), field)?;
        sys.mount(
            Some(Path::new("cgroup")),
            &t.path,
            Some("cgroup"),
            base,
            Some(&h.options),
        )
        .map_err(sys_err(format!(
            "{field}: mount cgroup {} on {}",
            h.options,
            d.display()
        )))?;
    }
    if let Some(v2) = &host.cgroup_v2_dir {
        if !v2.is_empty() {
            let d = dest.join(v2);
            let t = in_root(sys, rootfs, &d, Some(Kind::Dir), field)?;
            sys.mount(
                Some(Path::new("cgroup2")),
                &t.path,
                Some("cgroup2"),
                base,
                None,
            )
            .map_err(sys_err(format!(
                "{field}: mount cgroup2 on {}",
                d.display()
            )))?;
        }
    }
    if flags & MS_RDONLY != 0 {
        let t = in_root(sys, rootfs, dest, None, field)?;
        sys.mount(
            None,
            &t.path,
            None,
            MS_REMOUNT | MS_BIND | MS_RDONLY | base,
            None,
        )
        .map_err(sys_err(format!(
            "{field}: remount {} read-only",
            dest.display()
        )))?;
    }
    Ok(())
}

/// Mounts one spec mount. The destination is resolved inside the rootfs by
/// the kernel and mounted through its descriptor; after the mount it is
/// resolved again, so a remount or propagation change reaches the new mount
/// and not the directory under it.
fn do_mount(
    sys: &dyn Syscall,
    host: &HostInfo,
    rootfs: &Path,
    (m, opened): (&Mount, Option<std::os::fd::RawFd>),
    field: &str,
    before_cgroup: &mut dyn FnMut() -> Result<()>,
) -> Result<()> {
    let dest = m.destination();
    let opts = m.options().clone().unwrap_or_default();
    let (flags, prop, data) = parse_options(&opts);
    let typ = m.typ().clone().unwrap_or_default();
    let is_bind = flags & MS_BIND != 0 || typ == "bind";
    if is_bind {
        let src = m.source().clone().unwrap_or_default();
        // An opened source is asked through its fd: its path may be out of
        // this process's reach.
        let is_dir = match opened {
            Some(fd) => Path::new(&format!("/proc/self/fd/{fd}")).is_dir(),
            None => src.is_dir(),
        };
        let kind = if is_dir { Kind::Dir } else { Kind::File };
        let target = in_root(
            sys,
            rootfs,
            dest,
            Some(kind),
            &format!("{field}.destination"),
        )?;
        let rec = if opts.iter().any(|o| o == "rbind") {
            MS_REC
        } else {
            0
        };
        match opened {
            Some(fd) => sys.attach_mount(fd, &target.path),
            None => sys.mount(Some(&src), &target.path, None, MS_BIND | rec, None),
        }
        .map_err(sys_err(format!(
            "{field}: bind {} on {}",
            src.display(),
            dest.display()
        )))?;
        let extra = flags & !(MS_BIND | MS_REC | MS_REMOUNT);
        if extra != 0 {
            let target = in_root(sys, rootfs, dest, None, field)?;
            sys.mount(
                None,
                &target.path,
                None,
                MS_BIND | MS_REMOUNT | rec | extra,
                None,
            )
            .map_err(sys_err(format!(
                "{field}: remount {} with options",
                dest.display()
            )))?;
        }
    } else if typ == "cgroup" || typ == "cgroup2" {
        before_cgroup()?;
        mount_cgroup(sys, host, rootfs, dest, flags, field)?;
    } else {
        let target = in_root(
            sys,
            rootfs,
            dest,
            Some(Kind::Dir),
            &format!("{field}.destination"),
        )?;
        let src = m.source().clone().unwrap_or_else(|| PathBuf::from(&typ));
        let data = (!data.is_empty()).then_some(data.as_str());
        sys.mount(Some(&src), &target.path, Some(&typ), flags, data)
            .map_err(sys_err(format!(
                "{field}: mount {typ} on {}",
                dest.display()
            )))?;
    }
    if prop != 0 {
        let target = in_root(sys, rootfs, dest, None, field)?;
        sys.mount(None, &target.path, None, prop, None)
            .map_err(sys_err(format!(
                "{field}: set propagation of {}",
                dest.display()
            )))?;
    }
    Ok(())
}

struct Dev {
    path: &'static str,
    major: u64,
    minor: u64,
}

const DEFAULT_DEVICES: [Dev; 6] = [
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
struct Node<'a> {
    rel: &'a Path,
    mode: u32,
    major: u64,
    minor: u64,
    owner: Option<(u32, u32)>,
}

fn make_device(
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

fn setup_dev(
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

/// Everything from "make / private" to "root is read-only". Ends with the
/// process's root and cwd at the new root. `before_cgroup` runs before each
/// cgroupfs mount: the caller's chance to wait until the process is in its
/// cgroups and its cgroup namespace (it must cope with being called twice).
/// Returns the container's terminal when `host.terminal` asks for one.
pub fn setup(
    sys: &dyn Syscall,
    spec: &Spec,
    rootfs: &Path,
    host: &HostInfo,
    before_cgroup: &mut dyn FnMut() -> Result<()>,
) -> Result<Option<ContainerPty>> {
    let linux = spec.linux().clone().unwrap_or_default();
    // Keep host mount events out of the container (and ours out of the host).
    let prop = match linux.rootfs_propagation().as_deref() {
        Some("shared") | Some("rshared") => MS_SHARED | MS_REC,
        Some("private") | Some("rprivate") => MS_PRIVATE | MS_REC,
        _ => MS_SLAVE | MS_REC,
    };
    sys.mount(None, Path::new("/"), None, prop, None)
        .map_err(sys_err(
            "linux.rootfsPropagation: make / a slave".to_string(),
        ))?;
    if prop & MS_SHARED != 0 {
        // With / rshared (a bidirectional mount asked for it), the mount
        // holding the rootfs is shared too: binding the rootfs onto itself
        // would then propagate to the host and make a shared new root, which
        // pivot_root refuses (EINVAL). Only that one mount goes private, in
        // this namespace; the host-path binds made below still join their
        // host peer groups.
        let holder = mount_of(rootfs).point;
        sys.mount(None, &holder, None, MS_PRIVATE, None)
            .map_err(sys_err(format!(
                "linux.rootfsPropagation: make {} private",
                holder.display()
            )))?;
    }
    sys.mount(Some(rootfs), rootfs, None, MS_BIND | MS_REC, None)
        .map_err(sys_err(format!(
            "root.path: bind {} onto itself",
            rootfs.display()
        )))?;
    sys.umask(0);
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let opened = host
            .mount_fds
            .iter()
            .find(|(j, _)| *j == i)
            .map(|(_, fd)| *fd);
        do_mount(
            sys,
            host,
            rootfs,
            (m, opened),
            &format!("mounts[{i}]"),
            before_cgroup,
        )?;
    }
    let pty = setup_dev(sys, host, rootfs, spec)?;

    let old_root = in_root(
        sys,
        Path::new("/"),
        Path::new("/"),
        None,
        "root.path: old root",
    )?;
    sys.chdir(rootfs)
        .map_err(sys_err(format!("root.path: chdir {}", rootfs.display())))?;
    sys.pivot_root(Path::new("."), Path::new("."))
        .map_err(sys_err("root.path: pivot_root".to_string()))?;
    // The old root is now stacked on the new one; detach it without telling
    // the host. The propagation change must reach the old root itself: mount(2)
    // on a plain "." would stay on the cwd's mount, the new root, and make the
    // container's bidirectional mounts slaves (runc does the same fchdir).
    sys.fchdir(&old_root)
        .map_err(sys_err("root.path: fchdir to the old root".to_string()))?;
    sys.mount(None, Path::new("."), None, MS_SLAVE | MS_REC, None)
        .map_err(sys_err("root.path: make old root a slave".to_string()))?;
    sys.umount2(Path::new("."), libc::MNT_DETACH)
        .map_err(sys_err("root.path: detach old root".to_string()))?;
    sys.chdir(Path::new("/"))
        .map_err(sys_err("root.path: chdir /".to_string()))?;

    for (i, p) in linux.readonly_paths().iter().flatten().enumerate() {
        let path = Path::new(p);
        if !path.exists() {
            continue;
        }
        sys.mount(Some(path), path, None, MS_BIND | MS_REC, None)
            .and_then(|_| {
                sys.mount(
                    None,
                    path,
                    None,
                    MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                    None,
                )
            })
            .map_err(sys_err(format!("linux.readonlyPaths[{i}]: {p}")))?;
    }
    for (i, p) in linux.masked_paths().iter().flatten().enumerate() {
        let path = Path::new(p);
        let r = if path.is_dir() {
            sys.mount(
                Some(Path::new("tmpfs")),
                path,
                Some("tmpfs"),
                MS_RDONLY,
                None,
            )
        } else if path.exists() {
            sys.mount(Some(Path::new("/dev/null")), path, None, MS_BIND, None)
        } else {
            continue;
        };
        r.map_err(sys_err(format!("linux.maskedPaths[{i}]: {p}")))?;
    }
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        sys.mount(
            None,
            Path::new("/"),
            None,
            MS_BIND | MS_REMOUNT | MS_RDONLY,
            None,
        )
        .map_err(sys_err("root.readonly: remount / read-only".to_string()))?;
    }
    if let Some(p) = linux
        .rootfs_propagation()
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        if let Some(MountOpt::Propagation(f)) = mount_option(p) {
            sys.mount(None, Path::new("/"), None, f, None)
                .map_err(sys_err("linux.rootfsPropagation".to_string()))?;
        }
    }
    Ok(pty)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fake::RecordingSyscall;

    #[test]
    fn parses_flags_propagation_and_data() {
        let opts: Vec<String> = ["nosuid", "noexec", "rslave", "mode=755", "size=64k", "ro"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (f, p, d) = parse_options(&opts);
        assert_eq!(f, MS_NOSUID | MS_NOEXEC | MS_RDONLY);
        assert_eq!(p, MS_SLAVE | MS_REC);
        assert_eq!(d, "mode=755,size=64k");
        assert_eq!(mount_option("bogus"), None);
    }

    #[test]
    fn holding_mount_is_the_longest_and_topmost_with_its_propagation() {
        let text = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:40 / /var/lib rw master:7 - tmpfs tmpfs rw
31 22 0:41 / /var/lib/kube\\040lets rw shared:9 master:3 - tmpfs tmpfs rw
32 31 0:42 / /var/lib/kube\\040lets rw - tmpfs tmpfs rw
33 22 0:43 / /var/lib2 rw shared:4 - tmpfs tmpfs rw
";
        let m = |p: &str| holding_mount(text, Path::new(p));
        assert_eq!(
            m("/var/lib2/x"),
            HoldingMount {
                point: "/var/lib2".into(),
                shared: true,
                slave: false
            }
        );
        assert_eq!(
            m("/var/lib/x"),
            HoldingMount {
                point: "/var/lib".into(),
                shared: false,
                slave: true
            }
        );
        // The later of two stacked mounts is the one a lookup sees.
        assert_eq!(
            m("/var/lib/kube lets/pods"),
            HoldingMount {
                point: "/var/lib/kube lets".into(),
                shared: false,
                slave: false
            }
        );
        assert!(m("/etc").shared);
        assert_eq!(m("/etc").point, Path::new("/"));
    }

    #[test]
    fn rshared_root_keeps_pivot_root_valid_and_slaves_only_the_old_root() {
        let root = tempfile::tempdir().unwrap();
        let vol = tempfile::tempdir().unwrap();
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": root.path()},
            "mounts": [{"destination": "/vol", "type": "bind", "source": vol.path(),
                        "options": ["rbind", "rshared", "ro"]}],
            "linux": {"rootfsPropagation": "rshared"}
        }))
        .unwrap();
        let sys = RecordingSyscall::new();
        setup(&sys, &spec, root.path(), &HostInfo::default(), &mut || {
            Ok(())
        })
        .unwrap();
        let calls = sys.calls();
        let pos = |line: &str| {
            calls
                .iter()
                .position(|c| c == line)
                .unwrap_or_else(|| panic!("no call {line} in {calls:#?}"))
        };
        let r = root.path().display();
        let holder = mount_of(root.path()).point;
        // / rshared, the rootfs's own mount private, then the self-bind.
        let shared = pos(&format!("mount - / - {:#x} -", MS_SHARED | MS_REC));
        let private = pos(&format!(
            "mount - {} - {:#x} -",
            holder.display(),
            MS_PRIVATE
        ));
        let self_bind = pos(&format!("mount {r} {r} - {:#x} -", MS_BIND | MS_REC));
        assert!(shared < private && private < self_bind, "{calls:#?}");
        // The volume target is resolved in the root, created as a directory,
        // then resolved again for the remount and the propagation change.
        let first = pos(&format!("resolve {r}/vol dir"));
        let bind = pos(&format!(
            "mount {} {r}/vol - {:#x} -",
            vol.path().display(),
            MS_BIND | MS_REC
        ));
        assert!(first < bind, "{calls:#?}");
        let again: Vec<usize> = calls
            .iter()
            .enumerate()
            .filter(|(_, c)| *c == &format!("resolve {r}/vol -"))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(again.len(), 2, "{calls:#?}");
        assert!(again[0] > bind, "{calls:#?}");
        // The old root, not the new root ".", is made a slave before it goes.
        let fchdir = pos("fchdir /");
        let slave = pos(&format!("mount - . - {:#x} -", MS_SLAVE | MS_REC));
        assert!(
            pos("pivot_root . .") < fchdir && fchdir < slave,
            "{calls:#?}"
        );
        assert!(slave < pos("umount2 . 2"), "{calls:#?}");
    }

    #[test]
    fn setup_pivots_and_applies_readonly_root() {
        let root = tempfile::tempdir().unwrap();
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": root.path(), "readonly": true},
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc",
                        "options": ["nosuid", "noexec", "nodev"]}],
            "linux": {"maskedPaths": [], "readonlyPaths": []}
        }))
        .unwrap();
        let sys = RecordingSyscall::new();
        setup(&sys, &spec, root.path(), &HostInfo::default(), &mut || {
            Ok(())
        })
        .unwrap();
        let calls = sys.calls();
        let proc_mount = format!("mount proc {}/proc proc 0xe -", root.path().display());
        let pos = |prefix: &str| {
            calls
                .iter()
                .position(|c| c.starts_with(prefix))
                .unwrap_or_else(|| panic!("no call {prefix} in {calls:#?}"))
        };
        assert!(pos(&proc_mount) < pos("pivot_root . ."));
        assert!(pos("pivot_root . .") < pos("umount2 . 2"));
        assert_eq!(calls.last().unwrap(), "mount - / - 0x1021 -");
    }

    #[test]
    fn cgroup_gate_runs_just_before_the_first_cgroup_mount() {
        let root = tempfile::tempdir().unwrap();
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": root.path()},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup"},
                {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}
            ],
        }))
        .unwrap();
        let sys = RecordingSyscall::new();
        let mut gate_at = Vec::new();
        setup(&sys, &spec, root.path(), &HostInfo::default(), &mut || {
            gate_at.push(sys.calls().len());
            Ok(())
        })
        .unwrap();
        let calls = sys.calls();
        let cgroup = calls
            .iter()
            .position(|c| c.starts_with("mount cgroup2"))
            .unwrap();
        let proc_mount = calls
            .iter()
            .position(|c| c.starts_with("mount proc"))
            .unwrap();
        assert_eq!(gate_at.len(), 1, "{calls:#?}");
        assert!(
            proc_mount < gate_at[0] && gate_at[0] <= cgroup,
            "{calls:#?}"
        );
        assert!(!calls[..gate_at[0]]
            .iter()
            .any(|c| c.starts_with("mount cgroup")));

        // A failing gate stops the set-up before the cgroup mount.
        let sys = RecordingSyscall::new();
        let e = setup(&sys, &spec, root.path(), &HostInfo::default(), &mut || {
            Err(Error::Init("monitor aborted set-up".into()))
        })
        .unwrap_err();
        assert!(e.to_string().contains("monitor aborted"), "{e}");
        assert!(!sys.calls().iter().any(|c| c.starts_with("mount cgroup")));
    }

    #[test]
    fn binds_opened_by_the_monitor_are_attached_not_bound_by_path() {
        let root = tempfile::tempdir().unwrap();
        let src = tempfile::tempdir().unwrap();
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": root.path()},
            "mounts": [
                {"destination": "/a", "type": "bind", "source": src.path(), "options": ["rbind", "ro"]},
                {"destination": "/b", "type": "bind", "source": src.path(), "options": ["rbind"]},
            ],
        }))
        .unwrap();
        let sys = RecordingSyscall::new();
        let host = HostInfo {
            mount_fds: vec![(0, 42)],
            ..Default::default()
        };
        setup(&sys, &spec, root.path(), &host, &mut || Ok(())).unwrap();
        let calls = sys.calls();
        let src = src.path().display().to_string();
        assert!(
            calls.iter().any(|c| c.starts_with("attach_mount fd 42 ")),
            "{calls:?}"
        );
        // The attached one is still made read-only; the other is a plain bind.
        assert!(
            calls
                .iter()
                .any(|c| c.starts_with("mount - ") && c.contains("0x5021")),
            "{calls:?}"
        );
        assert_eq!(
            calls
                .iter()
                .filter(|c| c.starts_with(&format!("mount {src} ")))
                .count(),
            1,
            "{calls:?}"
        );
    }

    #[test]
    fn mount_failure_names_the_mount() {
        let root = tempfile::tempdir().unwrap();
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": root.path()},
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
        }))
        .unwrap();
        let sys = RecordingSyscall::new();
        sys.fail_on("mount proc", libc::EPERM);
        let e = setup(&sys, &spec, root.path(), &HostInfo::default(), &mut || {
            Ok(())
        })
        .unwrap_err();
        assert!(e.to_string().starts_with("mounts[0]: mount proc on"), "{e}");
    }
}

//! What the host looks like to the mount code: its cgroup hierarchies and
//! which mount holds a path (from mountinfo).

use super::*;

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
pub(super) fn unescape_mountinfo(field: &str) -> PathBuf {
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

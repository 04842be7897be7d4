//! A container joining its pod's user namespace (`linux.namespaces` entry
//! `user` with a `path`), and id-mapped bind mounts (`mounts[].uidMappings`).
//!
//! The monitor stays root of the host. A helper it forks joins the user
//! namespace and clones the init with `CLONE_PARENT`
//! ([`crate::sys::idmap::clone_into_userns`]), so the init's new mount, pid
//! and cgroup namespaces belong to the pod's user namespace: its root may
//! mount proc, sysfs (the pod's netns belongs to it too), tmpfs, devpts and
//! mqueue there, and nothing outside.
//!
//! The init becomes the pod's root (an unprivileged id on the host) before it
//! builds the rootfs, so it cannot walk berthd's 0700 directories. What it
//! needs from them is opened by the monitor first, as detached mounts
//! (open_tree): every bind source (id-mapped when the mount asks for it) and
//! the rootfs itself, which the init attaches to a private tmpfs over `/tmp`
//! in its own mount namespace ([`stage_rootfs`]) and builds from there.
//!
//! The monitor also hands the container's cgroup directories (and the files a
//! container manages itself: `cgroup.procs`, `tasks`, …) to the pod's root,
//! as runc does for a user-namespaced container, so a container root can
//! write its own cgroup files.

use crate::cgroups::CgroupManager;
use crate::error::{Error, Result};
use crate::idmap::{self, IdMap};
use crate::rootfs::parse_options;
use crate::sys::{idmap as sys_idmap, Syscall};
use oci_spec::runtime::{LinuxIdMapping, Spec};
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

fn to_maps(m: &Option<Vec<LinuxIdMapping>>) -> Vec<IdMap> {
    m.iter()
        .flatten()
        .map(|m| IdMap {
            container_id: m.container_id(),
            host_id: m.host_id(),
            length: m.size(),
        })
        .collect()
}

/// A user namespace for id-mapping one mount: the joined one when its maps
/// are the mount's (the kubelet's case), else a fresh one with the mount's
/// maps, made by a short-lived child.
fn userns_for(
    uid: &[IdMap],
    gid: &[IdMap],
    joined: Option<(&File, &[IdMap], &[IdMap])>,
    field: &str,
) -> Result<File> {
    if let Some((ns, ju, jg)) = joined {
        if ju == uid && jg == gid {
            return ns
                .try_clone()
                .map_err(|e| Error::sys("dup user namespace fd", e));
        }
    }
    for (f, maps) in [("uidMappings", uid), ("gidMappings", gid)] {
        if let Some(msg) = idmap::check_maps(maps) {
            return Err(Error::spec(format!("{field}.{f}"), msg));
        }
    }
    let child = sys_idmap::spawn_userns_child(&idmap::map_text(uid), &idmap::map_text(gid), || {
        Ok(String::new())
    })
    .map_err(|e| {
        Error::sys(
            format!("{field}: user namespace for the id-mapped mount"),
            e,
        )
    })?;
    let path = format!("/proc/{}/ns/user", child.pid);
    let f = File::open(&path).map_err(|e| Error::io(&path, e));
    child.finish();
    f
}

/// uid and gid maps of one mount.
pub type MountMaps = (Vec<IdMap>, Vec<IdMap>);

/// The maps of an `idmap=uids=C-H-L[#C-H-L…];gids=…` mount option (crun's
/// spelling; oci-spec has no `mounts[].uidMappings`), if the mount has one.
pub fn idmap_option(opts: &[String]) -> Option<std::result::Result<MountMaps, String>> {
    let v = opts.iter().find_map(|o| o.strip_prefix("idmap="))?;
    let parse = |list: &str| -> std::result::Result<Vec<IdMap>, String> {
        list.split('#')
            .map(|m| {
                IdMap::parse(&m.replace('-', ":"))
                    .ok_or_else(|| format!("idmap: bad mapping {m:?}"))
            })
            .collect()
    };
    let (mut uid, mut gid) = (Vec::new(), Vec::new());
    for part in v.split(';') {
        let r = match part.split_once('=') {
            Some(("uids", l)) => parse(l).map(|m| uid = m),
            Some(("gids", l)) => parse(l).map(|m| gid = m),
            _ => Err(format!("idmap: {part:?} is not uids=… or gids=…")),
        };
        if let Err(e) = r {
            return Some(Err(e));
        }
    }
    Some(Ok((uid, gid)))
}

/// The `idmap=` mount option for these maps (see [`idmap_option`]).
pub fn idmap_option_value(uid: &[IdMap], gid: &[IdMap]) -> String {
    let list = |maps: &[IdMap]| {
        maps.iter()
            .map(|m| format!("{}-{}-{}", m.container_id, m.host_id, m.length))
            .collect::<Vec<_>>()
            .join("#")
    };
    format!("idmap=uids={};gids={}", list(uid), list(gid))
}

/// Opens, in the monitor, the sources of the bind mounts as detached mounts:
/// id-mapped ones always, all of them when the init joins a user namespace
/// (`joined`). Returns `(mounts index, fd)`.
pub fn open_mount_sources(spec: &Spec, joined: Option<&File>) -> Result<Vec<(usize, OwnedFd)>> {
    let linux = spec.linux().clone().unwrap_or_default();
    let (ju, jg) = (to_maps(linux.uid_mappings()), to_maps(linux.gid_mappings()));
    let mut out = Vec::new();
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let field = format!("mounts[{i}]");
        let opts = m.options().clone().unwrap_or_default();
        let (flags, _, _) = parse_options(&opts);
        let is_bind = flags & libc::MS_BIND != 0 || m.typ().as_deref() == Some("bind");
        let (uid, gid) = match idmap_option(&opts) {
            Some(Ok(maps)) => maps,
            Some(Err(msg)) => return Err(Error::spec(format!("{field}.options"), msg)),
            None => (Vec::new(), Vec::new()),
        };
        let mapped = !uid.is_empty() || !gid.is_empty();
        if mapped && !is_bind {
            return Err(Error::spec(
                format!("{field}.uidMappings"),
                "only bind mounts can be id-mapped",
            ));
        }
        if !is_bind || (!mapped && joined.is_none()) {
            continue;
        }
        let src = m.source().clone().unwrap_or_default();
        let recursive = opts.iter().any(|o| o == "rbind");
        let fd = if mapped {
            let ns = userns_for(&uid, &gid, joined.map(|f| (f, &ju[..], &jg[..])), &field)?;
            idmap::clone_idmapped(&src, &ns, recursive).map_err(|e| {
                let why = if e.raw_os_error() == Some(libc::EINVAL) {
                    " (its filesystem cannot be id-mapped)"
                } else {
                    ""
                };
                Error::Unsupported {
                    field: format!("{field}.uidMappings"),
                    msg: format!(
                        "id-mapped mount of {} on {}: {e}{why}",
                        src.display(),
                        m.destination().display()
                    ),
                }
            })?
        } else {
            sys_idmap::open_tree_clone(&src, recursive).map_err(|e| {
                Error::sys(format!("{field}: open bind source {}", src.display()), e)
            })?
        };
        out.push((i, fd));
    }
    Ok(out)
}

/// Gives the container's cgroup directories and the files a container
/// writes itself to the root of the init's user namespace.
pub fn chown_cgroup(cgroup: &dyn CgroupManager, pid: i32) -> Result<()> {
    let read = |f: &str| -> Result<u32> {
        let path = PathBuf::from(format!("/proc/{pid}/{f}"));
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let maps: Vec<IdMap> = text
            .lines()
            .filter_map(|l| {
                let v: Vec<&str> = l.split_whitespace().collect();
                IdMap::parse(&v.join(":"))
            })
            .collect();
        idmap::to_host(&maps, 0)
            .ok_or_else(|| Error::Init(format!("{}: root is not mapped", path.display())))
    };
    let (uid, gid) = (read("uid_map")?, read("gid_map")?);
    for procs in cgroup.procs_files() {
        let Some(dir) = procs.parent() else { continue };
        let mut paths = vec![dir.to_path_buf()];
        for f in [
            "cgroup.procs",
            "tasks",
            "cgroup.threads",
            "cgroup.subtree_control",
        ] {
            let p = dir.join(f);
            if p.exists() {
                paths.push(p);
            }
        }
        for p in paths {
            std::os::unix::fs::lchown(&p, Some(uid), Some(gid)).map_err(|e| Error::io(&p, e))?;
        }
    }
    Ok(())
}

/// Where the init puts its rootfs when it cannot reach the real path: a
/// tmpfs over `/tmp`, in its own mount namespace only.
const STAGE: &str = "/tmp";

/// Attaches the rootfs the monitor opened (`rootfs_fd`, a detached copy of the
/// rootfs mount tree) at a path the init can walk, and returns that path.
/// `/` is made a slave first so the tmpfs never reaches the host.
pub fn stage_rootfs(sys: &dyn Syscall, rootfs_fd: &OwnedFd) -> Result<PathBuf> {
    let stage = Path::new(STAGE);
    sys.mount(
        None,
        Path::new("/"),
        None,
        libc::MS_SLAVE | libc::MS_REC,
        None,
    )
    .map_err(|e| Error::sys("user namespace: make / a slave", e))?;
    sys.mount(
        Some(Path::new("tmpfs")),
        stage,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        Some("mode=0700,size=64k"),
    )
    .map_err(|e| Error::sys(format!("user namespace: mount tmpfs on {STAGE}"), e))?;
    let target = stage.join("rootfs");
    sys.mkdir_all(&target, 0o700)
        .map_err(|e| Error::sys(format!("mkdir {}", target.display()), e))?;
    sys.attach_mount(rootfs_fd.as_raw_fd(), &target)
        .map_err(|e| {
            Error::sys(
                format!("root.path: attach the rootfs on {}", target.display()),
                e,
            )
        })?;
    Ok(target)
}

/// Opens the rootfs mount tree as a detached copy (monitor side).
pub fn open_rootfs(rootfs: &Path) -> Result<OwnedFd> {
    sys_idmap::open_tree_clone(rootfs, true)
        .map_err(|e| Error::sys(format!("root.path: open {}", rootfs.display()), e))
}

/// `process.oomScoreAdj` written by the monitor: lowering it needs
/// CAP_SYS_RESOURCE of the host, which the init in a user namespace lacks.
/// The init's own write of the same value then changes nothing.
pub fn set_oom_score_adj(pid: i32, p: &oci_spec::runtime::Process, restrict: bool) -> Result<()> {
    let Some(want) = p.oom_score_adj() else {
        return Ok(());
    };
    let cur: i32 = std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let value = if restrict && want < cur { cur } else { want };
    let path = PathBuf::from(format!("/proc/{pid}/oom_score_adj"));
    std::fs::write(&path, value.to_string())
        .map_err(|e| Error::sys(format!("process.oomScoreAdj: write {value}"), e))
}

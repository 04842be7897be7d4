//! The container's filesystem view: spec mounts, /dev, pivot_root, masked and
//! read-only paths. Runs in the container's new mount namespace, before
//! pivot_root, through [`Syscall`] so the sequence is unit-testable.
//!
//! Here: [`setup`], the order of it all. Its parts: `options.rs` (OCI mount
//! options), `host.rs` (the host's cgroup hierarchies and mountinfo),
//! `mounts.rs` (each spec mount and the cgroup mount), `dev.rs` (`/dev`).

use crate::container::exec_tty::ContainerPty;
use crate::error::{Error, Result};
use crate::sys::inroot::Kind;
use crate::sys::process;
use crate::sys::InRoot;
use crate::sys::Syscall;
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount, Spec};
use std::path::{Path, PathBuf};

mod dev;
mod host;
mod mounts;
mod options;

use dev::*;
pub use host::{holding_mount, mount_of, mounts_cgroupfs, CgroupHierarchy, HoldingMount, HostInfo};
use mounts::*;
pub use options::{mount_option, parse_options, MountOpt};

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

//! Taking the kernel's cgroup attach lock ahead of time, so that moving a new
//! container's init into its cgroup does not wait for an RCU grace period.
//!
//! Every write to a `cgroup.procs` file takes one global lock
//! (`cgroup_threadgroup_rwsem`, a per-cpu rwsem) for writing. When no writer
//! has held it for a while the first writer waits a full RCU grace period
//! before it gets it (6–20 ms on the 2-CPU hosts we measure on; more under
//! load), and for about one grace period after it lets go later writers get it
//! at once. That wait was most of `berth-monitor create` and so of
//! CreateContainer. A caller that knows a container is about to be created can
//! start the wait early, on a thread of its own, by "moving" its own process
//! into the cgroup it is already in: the kernel takes the lock, finds nothing
//! to move, and the container's real attach a few milliseconds later finds the
//! grace period already (or partly) waited for. Nothing about any process's
//! cgroup membership changes.
//!
//! Hosts mounted with `favordynmods` (cgroup2) have no such wait; the write is
//! then just cheap.

use std::path::{Path, PathBuf};

/// The `cgroup.procs` files of the calling process's own cgroups under `root`
/// (cgroupfs, normally `/sys/fs/cgroup`), given the text of
/// `/proc/self/cgroup`; the unified hierarchy first. Only files that exist.
pub fn own_procs_files(root: &Path, proc_self_cgroup: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut v1 = Vec::new();
    for line in proc_self_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let rel = path.trim_start_matches('/');
        if controllers.is_empty() {
            // cgroup2: at the root on a v2 host, under `unified` on a hybrid one.
            for mount in [root.join("unified"), root.to_path_buf()] {
                let f = mount.join(rel).join("cgroup.procs");
                if f.is_file() {
                    out.push(f);
                    break;
                }
            }
        } else {
            let dir = controllers.strip_prefix("name=").unwrap_or(controllers);
            let f = root.join(dir).join(rel).join("cgroup.procs");
            if f.is_file() {
                v1.push(f);
            }
        }
    }
    out.extend(v1);
    out
}

/// Takes and releases the cgroup attach lock by writing our own pid to our
/// own cgroup's `cgroup.procs` (see the module doc). Blocks for up to one RCU
/// grace period; call it from a thread that may block. Returns whether a
/// write went through; failing is harmless (the attach just waits later).
pub fn warm_attach_lock(root: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string("/proc/self/cgroup") else {
        return false;
    };
    let pid = std::process::id().to_string();
    own_procs_files(root, &text)
        .iter()
        .any(|f| super::write(f, &pid).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "").unwrap();
    }

    #[test]
    fn hybrid_host_lists_unified_first_then_v1_hierarchies_that_exist() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        touch(&r.join("unified/system.slice/berthd.service/cgroup.procs"));
        touch(&r.join("pids/system.slice/berthd.service/cgroup.procs"));
        touch(&r.join("systemd/system.slice/berthd.service/cgroup.procs"));
        let text = "9:name=systemd:/system.slice/berthd.service\n\
                    8:pids:/system.slice/berthd.service\n\
                    4:memory:/system.slice/berthd.service\n\
                    0::/system.slice/berthd.service\n";
        assert_eq!(
            own_procs_files(r, text),
            vec![
                r.join("unified/system.slice/berthd.service/cgroup.procs"),
                r.join("systemd/system.slice/berthd.service/cgroup.procs"),
                r.join("pids/system.slice/berthd.service/cgroup.procs"),
            ]
        );
    }

    #[test]
    fn v2_host_uses_the_root_mount_and_root_cgroup() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        touch(&r.join("cgroup.procs"));
        assert_eq!(own_procs_files(r, "0::/\n"), vec![r.join("cgroup.procs")]);
        assert!(own_procs_files(r, "garbage\n").is_empty());
    }

    #[test]
    fn warming_writes_our_pid_into_our_own_cgroup_and_moves_nothing() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED: needs root");
            return;
        }
        let root = Path::new("/sys/fs/cgroup");
        let before = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        if own_procs_files(root, &before).is_empty() {
            eprintln!("SKIPPED: no cgroupfs at {}", root.display());
            return;
        }
        assert!(warm_attach_lock(root));
        assert_eq!(
            std::fs::read_to_string("/proc/self/cgroup").unwrap(),
            before
        );
    }
}

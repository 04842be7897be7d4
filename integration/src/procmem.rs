//! Which processes make up a CRI runtime on this node, and how much memory
//! they use, read from /proc: the `memory` and `concurrent-pods` workloads of
//! `berth-bench`.
//!
//! How a runtime's processes are found (the same rule for both runtimes):
//! 1. the daemon, by the pid of the child we started;
//! 2. its per-container helpers, by executable name plus the daemon's private
//!    tempdir appearing in their command line: berthd's `berth-monitor`s carry
//!    `--state-dir <dir>/state/c/<id>` (pause-mode inits, `berth-monitor
//!    __pause`, name their pin dir under `<dir>/state`); containerd's
//!    `containerd-shim-runc-v2` carries `-address <dir>/containerd.sock`.
//!    Helpers re-parent to init (they daemonise), so they are not the
//!    daemon's descendants and cannot be found by walking its children;
//! 3. the helpers' children that are not running the workload's own command:
//!    for containerd these are the pods' pause processes (the shim is the
//!    parent of both the pause container and the pod's app containers, one
//!    shim per pod); for berthd a monitor's only child is the container's own
//!    process, so nothing is added.
//!
//! The workload processes themselves (`sleep`) are not the runtime's cost and
//! are left out on both sides.

use std::path::{Path, PathBuf};

/// The processes of one runtime instance.
#[derive(Clone, Debug)]
pub struct RuntimeProcs {
    /// The daemon (berthd or containerd).
    pub daemon_pid: u32,
    /// Executable name of the per-container helper (`berth-monitor`,
    /// `containerd-shim-runc-v2`).
    pub helper_name: String,
    /// The daemon's private directory, found in every helper's command line.
    pub dir: PathBuf,
    /// The argv of the benchmark's own containers, not counted.
    pub workload_argv: Vec<String>,
}

/// Memory of a set of processes, in KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Memory {
    pub processes: usize,
    pub rss_kib: u64,
    pub pss_kib: u64,
    /// Private_Clean + Private_Dirty: pages mapped by that process alone (USS).
    pub private_kib: u64,
}

impl RuntimeProcs {
    pub fn berthd(daemon_pid: u32, dir: &Path, workload_argv: &[&str]) -> RuntimeProcs {
        RuntimeProcs {
            daemon_pid,
            helper_name: "berth-monitor".into(),
            dir: dir.to_path_buf(),
            workload_argv: workload_argv.iter().map(|s| s.to_string()).collect(),
        }
    }

    pub fn containerd(daemon_pid: u32, dir: &Path, workload_argv: &[&str]) -> RuntimeProcs {
        RuntimeProcs {
            daemon_pid,
            helper_name: "containerd-shim-runc-v2".into(),
            dir: dir.to_path_buf(),
            workload_argv: workload_argv.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The helpers (rule 2 of the module doc).
    pub fn helpers(&self) -> Vec<u32> {
        let needle = self.dir.to_string_lossy().into_owned();
        all_pids()
            .into_iter()
            .filter(|&pid| {
                let argv = cmdline(pid);
                let named = argv.first().is_some_and(|a0| {
                    Path::new(a0).file_name().and_then(|n| n.to_str())
                        == Some(self.helper_name.as_str())
                });
                named && argv.iter().any(|a| a.contains(&needle))
            })
            .collect()
    }

    /// Every process of the runtime: daemon, helpers and the helpers'
    /// non-workload children (the module doc's rules 1–3).
    pub fn all(&self) -> Vec<u32> {
        let helpers = self.helpers();
        let mut out = vec![self.daemon_pid];
        out.extend(&helpers);
        for pid in all_pids() {
            if helpers.contains(&ppid(pid).unwrap_or(0))
                && !helpers.contains(&pid)
                && cmdline(pid) != self.workload_argv
            {
                out.push(pid);
            }
        }
        out
    }
}

/// Sums VmRSS, Pss and private memory over `pids`; processes that are gone are
/// skipped. RSS counts every shared page (libc, the runtime's own binary) once
/// per process; Pss splits them between their users; private pages are what
/// a process alone costs.
pub fn memory_of(pids: &[u32]) -> Memory {
    let mut m = Memory::default();
    for &pid in pids {
        let Some(rss) = status_kib(pid, "VmRSS:") else {
            continue;
        };
        m.processes += 1;
        m.rss_kib += rss;
        if let Ok(rollup) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) {
            m.pss_kib += kib_field(&rollup, "Pss:").unwrap_or(0);
            m.private_kib += kib_field(&rollup, "Private_Clean:").unwrap_or(0)
                + kib_field(&rollup, "Private_Dirty:").unwrap_or(0);
        }
    }
    m
}

/// A process's VmRSS in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    kib_field(&s, key)
}

/// The value of a `Key:   123 kB` line.
fn kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn all_pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .collect()
}

fn cmdline(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    raw.split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// The parent pid, from /proc/<pid>/stat (after the `)` closing the comm,
/// which may itself contain spaces and parentheses).
fn ppid(pid: u32) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kib_fields_are_parsed_from_proc_text() {
        let status = "Name:\tx\nVmRSS:\t    2612 kB\nRssAnon:\t  160 kB\n";
        assert_eq!(kib_field(status, "VmRSS:"), Some(2612));
        assert_eq!(kib_field(status, "RssAnon:"), Some(160));
        assert_eq!(kib_field(status, "Pss:"), None);
    }

    #[test]
    fn our_own_process_is_measured_and_its_parent_found() {
        let me = std::process::id();
        let m = memory_of(&[me, u32::MAX]);
        assert_eq!(m.processes, 1, "a missing pid is skipped");
        assert!(m.rss_kib > 0 && m.pss_kib > 0, "{m:?}");
        // A test binary's heap and stacks are its own; its libc pages are not.
        assert!(m.private_kib > 0 && m.private_kib < m.rss_kib, "{m:?}");
        assert_eq!(ppid(me), Some(std::os::unix::process::parent_id()));
    }

    #[test]
    fn helpers_match_name_and_dir() {
        // A child named like a helper whose command line names the dir.
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("berth-monitor");
        std::os::unix::fs::symlink("/bin/sleep", &fake).unwrap();
        let mut child = std::process::Command::new(&fake).arg("30").spawn().unwrap();
        let procs = RuntimeProcs::berthd(std::process::id(), dir.path(), &["sleep", "3600"]);
        // Until the child has exec'd, its /proc entry still shows this test
        // binary: wait for the exec (bounded) before judging.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut found = procs.helpers();
        while found.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
            found = procs.helpers();
        }
        let other = RuntimeProcs::berthd(std::process::id(), Path::new("/nonexistent-x"), &[]);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(found, vec![child.id()]);
        assert!(other.helpers().is_empty());
    }
}

//! Best-effort removal of everything a daemon under test left behind in its
//! tempdir: processes (monitors, shims, containers) and mounts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Kills every process belonging to `dir` (see [`kill_processes_under`]) until
/// none is left, then lazily unmounts everything mounted below `dir`.
pub fn kill_and_unmount_under(dir: &Path) {
    for _ in 0..20 {
        if kill_processes_under(dir) == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    unmount_under(dir);
}

/// SIGKILLs processes that belong to the instance in `dir`; returns how many it
/// signalled.
pub fn kill_processes_under(dir: &Path) -> usize {
    let needle = dir.to_string_lossy().into_owned();
    let own_mnt_ns = std::fs::read_link("/proc/self/ns/mnt").ok();
    let own_pid = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut killed = 0;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == own_pid {
            continue;
        }
        let proc_dir = entry.path();
        let cmdline = std::fs::read(proc_dir.join("cmdline")).unwrap_or_default();
        let mut ours = String::from_utf8_lossy(&cmdline).contains(&needle);
        if !ours {
            // A process in the host's mount namespace sees every container rootfs
            // mount too, so mountinfo only identifies processes in other namespaces.
            let mnt_ns = std::fs::read_link(proc_dir.join("ns/mnt")).ok();
            if mnt_ns.is_some() && mnt_ns != own_mnt_ns {
                let mounts =
                    std::fs::read_to_string(proc_dir.join("mountinfo")).unwrap_or_default();
                ours = mounts.contains(&needle);
            }
        }
        if ours
            && kill(
                Pid::from_raw(i32::try_from(pid).unwrap_or(0)),
                Signal::SIGKILL,
            )
            .is_ok()
        {
            killed += 1;
        }
    }
    killed
}

/// Lazily unmounts every mount point at or below `dir` in our mount namespace.
pub fn unmount_under(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|p| p.starts_with(dir))
        .collect();
    // Deepest first so parents are not busy.
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    for p in points {
        let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> PathBuf {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            if let Some(v) = s
                .get(i + 1..i + 4)
                .and_then(|o| u8::from_str_radix(o, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    PathBuf::from(std::ffi::OsString::from(
        <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&out),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(
            unescape_mountinfo(r"/tmp/a\040b\011c\134d"),
            PathBuf::from("/tmp/a b\tc\\d")
        );
        assert_eq!(unescape_mountinfo(r"/plain"), PathBuf::from("/plain"));
        assert_eq!(unescape_mountinfo(r"/end\04"), PathBuf::from(r"/end\04"));
    }
}

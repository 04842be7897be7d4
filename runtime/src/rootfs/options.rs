//! OCI mount options: which are flags, which propagation, which data.

use super::*;

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
        // Recursive read-only: MS_RDONLY on the top mount here, and
        // `do_mount` makes every submount read-only too.
        "rro" => Flag(true, MS_RDONLY),
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

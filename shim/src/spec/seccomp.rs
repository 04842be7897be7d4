//! The RuntimeDefault seccomp profile: an allow-list with the same reach as
//! containerd's default (anything not listed fails with EPERM), widened by the
//! container's capabilities the way containerd widens it, and split by
//! architecture for x86_64 and aarch64.
//!
//! The list assumes a kernel ≥ 4.8 (ptrace and process_vm_* are allowed
//! unconditionally); io_uring is left out, as in current containerd.

use oci_spec::runtime::{
    Arch, Capabilities, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg,
    LinuxSeccompArgBuilder, LinuxSeccompOperator, LinuxSyscall,
};

/// Syscalls every container may make.
#[rustfmt::skip]
pub const ALLOWED: &[&str] = &[
    "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk", "cachestat", "capget",
    "capset", "chdir", "chmod", "chown", "chown32", "clock_adjtime", "clock_adjtime64",
    "clock_getres", "clock_getres_time64", "clock_gettime", "clock_gettime64", "clock_nanosleep",
    "clock_nanosleep_time64", "close", "close_range", "connect", "copy_file_range", "creat", "dup",
    "dup2", "dup3", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
    "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "execve", "execveat",
    "exit", "exit_group", "faccessat", "faccessat2", "fadvise64", "fadvise64_64", "fallocate",
    "fanotify_mark", "fchdir", "fchmod", "fchmodat", "fchmodat2", "fchown", "fchown32", "fchownat",
    "fcntl", "fcntl64", "fdatasync", "fgetxattr", "flistxattr", "flock", "fork", "fremovexattr",
    "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate",
    "ftruncate64", "futex", "futex_requeue", "futex_time64", "futex_wait", "futex_waitv",
    "futex_wake", "futimesat", "getcpu", "getcwd", "getdents", "getdents64", "getegid", "getegid32",
    "geteuid", "geteuid32", "getgid", "getgid32", "getgroups", "getgroups32", "getitimer",
    "getpeername", "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getrandom",
    "getresgid", "getresgid32", "getresuid", "getresuid32", "getrlimit", "get_robust_list",
    "getrusage", "getsid", "getsockname", "getsockopt", "get_thread_area", "gettid", "gettimeofday",
    "getuid", "getuid32", "getxattr", "inotify_add_watch", "inotify_init", "inotify_init1",
    "inotify_rm_watch", "io_cancel", "ioctl", "io_destroy", "io_getevents", "io_pgetevents",
    "io_pgetevents_time64", "ioprio_get", "ioprio_set", "io_setup", "io_submit", "ipc", "kill",
    "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self", "lchown", "lchown32",
    "lgetxattr", "link", "linkat", "listen", "listxattr", "llistxattr", "_llseek", "lremovexattr",
    "lseek", "lsetxattr", "lstat", "lstat64", "madvise", "map_shadow_stack", "membarrier",
    "memfd_create", "memfd_secret", "mincore", "mkdir", "mkdirat", "mknod", "mknodat", "mlock",
    "mlock2", "mlockall", "mmap", "mmap2", "mprotect", "mq_getsetattr", "mq_notify", "mq_open",
    "mq_timedreceive", "mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64", "mq_unlink",
    "mremap", "msgctl", "msgget", "msgrcv", "msgsnd", "msync", "munlock", "munlockall", "munmap",
    "name_to_handle_at", "nanosleep", "newfstatat", "_newselect", "open", "openat", "openat2",
    "pause", "pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free",
    "pkey_mprotect", "poll", "ppoll", "ppoll_time64", "prctl", "pread64", "preadv", "preadv2",
    "prlimit64", "process_mrelease", "process_vm_readv", "process_vm_writev", "pselect6",
    "pselect6_time64", "ptrace", "pwrite64", "pwritev", "pwritev2", "read", "readahead", "readlink",
    "readlinkat", "readv", "recv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg",
    "remap_file_pages", "removexattr", "rename", "renameat", "renameat2", "restart_syscall",
    "rmdir", "rseq", "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo",
    "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo", "sched_getaffinity", "sched_getattr", "sched_getparam",
    "sched_get_priority_max", "sched_get_priority_min", "sched_getscheduler",
    "sched_rr_get_interval", "sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr",
    "sched_setparam", "sched_setscheduler", "sched_yield", "seccomp", "select", "semctl", "semget",
    "semop", "semtimedop", "semtimedop_time64", "send", "sendfile", "sendfile64", "sendmmsg",
    "sendmsg", "sendto", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32",
    "setgroups", "setgroups32", "setitimer", "setpgid", "setpriority", "setregid", "setregid32",
    "setresgid", "setresgid32", "setresuid", "setresuid32", "setreuid", "setreuid32", "setrlimit",
    "set_robust_list", "setsid", "setsockopt", "set_thread_area", "set_tid_address", "setuid",
    "setuid32", "setxattr", "shmat", "shmctl", "shmdt", "shmget", "shutdown", "sigaltstack",
    "signalfd", "signalfd4", "sigprocmask", "sigreturn", "socket", "socketcall", "socketpair",
    "splice", "stat", "stat64", "statfs", "statfs64", "statx", "symlink", "symlinkat", "sync",
    "sync_file_range", "syncfs", "sysinfo", "tee", "tgkill", "time", "timer_create", "timer_delete",
    "timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime", "timer_settime64",
    "timerfd_create", "timerfd_gettime", "timerfd_gettime64", "timerfd_settime",
    "timerfd_settime64", "times", "tkill", "truncate", "truncate64", "ugetrlimit", "umask", "uname",
    "unlink", "unlinkat", "utime", "utimensat", "utimensat_time64", "utimes", "vfork", "vmsplice",
    "wait4", "waitid", "waitpid", "write", "writev",
];

/// Extra syscalls on x86 (x86_64, i386, x32).
pub const ALLOWED_X86: &[&str] = &["arch_prctl", "modify_ldt"];

/// Extra syscalls on arm (aarch64 and its 32-bit compat mode).
pub const ALLOWED_ARM: &[&str] = &[
    "arm_fadvise64_64",
    "arm_sync_file_range",
    "sync_file_range2",
    "breakpoint",
    "cacheflush",
    "set_tls",
];

/// personality(2) personas that are allowed: PER_LINUX, PER_LINUX32,
/// UNAME26, UNAME26|PER_LINUX32, and the 0xffffffff query.
pub const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// clone(2) flags that create namespaces; without CAP_SYS_ADMIN a clone with
/// any of them is refused.
pub const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

/// Syscalls opened up by one capability.
pub const BY_CAPABILITY: &[(Capability, &[&str])] = &[
    (Capability::DacReadSearch, &["open_by_handle_at"]),
    (
        Capability::SysAdmin,
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "pivot_root",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    (Capability::SysBoot, &["reboot"]),
    (Capability::SysChroot, &["chroot"]),
    (
        Capability::SysModule,
        &["delete_module", "init_module", "finit_module"],
    ),
    (Capability::SysPacct, &["acct"]),
    (
        Capability::SysPtrace,
        &["kcmp", "pidfd_getfd", "process_madvise"],
    ),
    (Capability::SysRawio, &["iopl", "ioperm"]),
    (
        Capability::SysTime,
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    (Capability::SysTtyConfig, &["vhangup"]),
    (
        Capability::SysNice,
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    (Capability::Syslog, &["syslog"]),
    (Capability::Bpf, &["bpf"]),
    (Capability::Perfmon, &["perf_event_open"]),
];

fn rule(
    names: &[&str],
    action: LinuxSeccompAction,
    errno: Option<u32>,
    args: Vec<LinuxSeccompArg>,
) -> LinuxSyscall {
    let mut s = LinuxSyscall::default();
    s.set_names(names.iter().map(|n| n.to_string()).collect());
    s.set_action(action);
    s.set_errno_ret(errno);
    s.set_args(if args.is_empty() { None } else { Some(args) });
    s
}

fn arg(
    index: usize,
    value: u64,
    value_two: Option<u64>,
    op: LinuxSeccompOperator,
) -> LinuxSeccompArg {
    let b = LinuxSeccompArgBuilder::default()
        .index(index)
        .value(value)
        .op(op);
    let b = match value_two {
        Some(v) => b.value_two(v),
        None => b,
    };
    // Every field is set, so building cannot fail.
    b.build().unwrap_or_default()
}

/// The RuntimeDefault profile for `arch` (a `std::env::consts::ARCH` name) and
/// a container holding `caps`.
pub fn profile_for(arch: &str, caps: &Capabilities) -> LinuxSeccomp {
    use LinuxSeccompAction::{ScmpActAllow as Allow, ScmpActErrno as Errno};
    let mut syscalls = vec![rule(ALLOWED, Allow, None, vec![])];
    for p in PERSONALITIES {
        syscalls.push(rule(
            &["personality"],
            Allow,
            None,
            vec![arg(0, p, None, LinuxSeccompOperator::ScmpCmpEq)],
        ));
    }
    let architectures = match arch {
        "x86_64" => {
            syscalls.push(rule(ALLOWED_X86, Allow, None, vec![]));
            vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
        }
        "aarch64" => {
            syscalls.push(rule(ALLOWED_ARM, Allow, None, vec![]));
            vec![Arch::ScmpArchArm, Arch::ScmpArchAarch64]
        }
        _ => Vec::new(),
    };
    let mut extra: Vec<&str> = Vec::new();
    for (cap, names) in BY_CAPABILITY {
        if caps.contains(cap) {
            for n in *names {
                if !extra.contains(n) {
                    extra.push(n);
                }
            }
        }
    }
    if !caps.contains(&Capability::SysAdmin) {
        // Plain fork/thread clones stay possible; namespace creation does not.
        syscalls.push(rule(
            &["clone"],
            Allow,
            None,
            vec![arg(
                0,
                CLONE_NAMESPACE_FLAGS,
                Some(0),
                LinuxSeccompOperator::ScmpCmpMaskedEq,
            )],
        ));
        // clone3 passes its flags in memory the filter cannot see: ENOSYS makes
        // libc fall back to clone, which the rule above checks.
        syscalls.push(rule(&["clone3"], Errno, Some(libc::ENOSYS as u32), vec![]));
    }
    if !extra.is_empty() {
        syscalls.push(rule(&extra, Allow, None, vec![]));
    }
    let mut s = LinuxSeccomp::default();
    s.set_default_action(Errno);
    s.set_default_errno_ret(Some(libc::EPERM as u32));
    s.set_architectures(if architectures.is_empty() {
        None
    } else {
        Some(architectures)
    });
    s.set_flags(None);
    s.set_listener_path(None);
    s.set_listener_metadata(None);
    s.set_syscalls(Some(syscalls));
    s
}

/// The RuntimeDefault profile for this machine and containerd's default
/// capability set.
pub fn runtime_default_seccomp() -> LinuxSeccomp {
    let caps: Capabilities = super::security::default_capabilities()
        .iter()
        .filter_map(|n| super::security::parse_capability(n, "").ok())
        .collect();
    profile_for(std::env::consts::ARCH, &caps)
}

/// The native and compat architectures libseccomp should cover on `arch`.
fn docker_arch_name(arch: &str) -> &'static [&'static str] {
    // Docker-format `includes.arches` use Go's names plus x86/x32.
    match arch {
        "x86_64" => &["amd64", "x86_64"],
        "aarch64" => &["arm64", "aarch64"],
        _ => &[],
    }
}

fn native_scmp_arch(arch: &str) -> Option<&'static str> {
    match arch {
        "x86_64" => Some("SCMP_ARCH_X86_64"),
        "aarch64" => Some("SCMP_ARCH_AARCH64"),
        _ => None,
    }
}

/// `"6.1.0-26-amd64"` → `(6, 1)`.
pub fn parse_kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.trim().split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// The running kernel's version, for `minKernel` conditions.
pub fn running_kernel() -> Option<(u32, u32)> {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .and_then(|r| parse_kernel_version(&r))
}

/// Whether a Docker-format `includes`/`excludes` condition holds.
fn condition_holds(
    cond: &serde_json::Value,
    arch: &str,
    caps: &Capabilities,
    kernel: Option<(u32, u32)>,
    all: bool,
) -> bool {
    let names = |key: &str| -> Vec<String> {
        cond.get(key)
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let held =
        |c: &String| super::security::parse_capability(c, "").is_ok_and(|cap| caps.contains(&cap));
    let mut checks = Vec::new();
    let cap_list = names("caps");
    if !cap_list.is_empty() {
        // includes: every listed capability held; excludes: any of them.
        checks.push(if all {
            cap_list.iter().all(held)
        } else {
            cap_list.iter().any(held)
        });
    }
    let arches = names("arches");
    if !arches.is_empty() {
        checks.push(
            arches
                .iter()
                .any(|a| docker_arch_name(arch).contains(&a.as_str())),
        );
    }
    if let Some(min) = cond.get("minKernel").and_then(|v| v.as_str()) {
        let ok = match (parse_kernel_version(min), kernel) {
            (Some(want), Some(have)) => have >= want,
            _ => false,
        };
        checks.push(ok);
    }
    if all {
        checks.iter().all(|c| *c)
    } else {
        checks.iter().any(|c| *c)
    }
}

/// Reads a Localhost profile in either the OCI form or Docker's form
/// (`archMap`, per-rule `includes`/`excludes` on capabilities, architectures
/// and kernel version), resolving the Docker conditions for this container so
/// a capability-gated rule never applies to a container without it.
pub fn from_profile_json(
    mut v: serde_json::Value,
    arch: &str,
    caps: &Capabilities,
    kernel: Option<(u32, u32)>,
) -> std::result::Result<LinuxSeccomp, String> {
    let obj = v.as_object_mut().ok_or("not a json object")?;
    if let Some(map) = obj.remove("archMap") {
        if !obj.contains_key("architectures") {
            let native = native_scmp_arch(arch);
            let entry = map
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e.get("architecture").and_then(|a| a.as_str()) == native);
            if let Some(e) = entry {
                let mut arches = vec![e["architecture"].clone()];
                if let Some(sub) = e.get("subArchitectures").and_then(|s| s.as_array()) {
                    arches.extend(sub.iter().cloned());
                }
                obj.insert("architectures".into(), serde_json::Value::Array(arches));
            }
        }
    }
    if let Some(rules) = obj.get_mut("syscalls").and_then(|s| s.as_array_mut()) {
        rules.retain(|r| {
            let inc = r
                .get("includes")
                .is_none_or(|c| condition_holds(c, arch, caps, kernel, true));
            let exc = r
                .get("excludes")
                .is_some_and(|c| condition_holds(c, arch, caps, kernel, false));
            inc && !exc
        });
        for r in rules.iter_mut() {
            if let Some(o) = r.as_object_mut() {
                o.remove("includes");
                o.remove("excludes");
                o.remove("comment");
                // Docker writes a single `name` in old profiles.
                if let Some(name) = o.remove("name") {
                    o.entry("names")
                        .or_insert_with(|| serde_json::Value::Array(vec![name]));
                }
            }
        }
    }
    serde_json::from_value(v).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The action the profile takes for `name` when its arguments match no
    /// conditional rule (unconditional rules only).
    fn unconditional(p: &LinuxSeccomp, name: &str) -> Option<LinuxSeccompAction> {
        p.syscalls()
            .iter()
            .flatten()
            .find(|s| s.args().is_none() && s.names().iter().any(|n| n == name))
            .map(|s| s.action())
    }

    fn conditional<'a>(p: &'a LinuxSeccomp, name: &str) -> Vec<&'a LinuxSyscall> {
        p.syscalls()
            .iter()
            .flatten()
            .filter(|s| s.args().is_some() && s.names().iter().any(|n| n == name))
            .collect()
    }

    #[test]
    fn default_profile_allows_the_usual_and_denies_the_dangerous() {
        let p = runtime_default_seccomp();
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), Some(libc::EPERM as u32));
        for ok in [
            "read",
            "write",
            "openat",
            "execve",
            "futex",
            "exit_group",
            "chroot",
            "socket",
        ] {
            assert_eq!(
                unconditional(&p, ok),
                Some(LinuxSeccompAction::ScmpActAllow),
                "{ok}"
            );
        }
        for denied in [
            "kexec_load",
            "mount",
            "unshare",
            "setns",
            "reboot",
            "init_module",
            "bpf",
            "open_by_handle_at",
            "io_uring_setup",
            "keyctl",
            "add_key",
            "userfaultfd",
        ] {
            assert_eq!(unconditional(&p, denied), None, "{denied}");
            assert!(conditional(&p, denied).is_empty(), "{denied}");
        }
        // clone only without namespace flags; clone3 answers ENOSYS.
        let clone = conditional(&p, "clone");
        assert_eq!(clone.len(), 1);
        let a = &clone[0].args().as_ref().unwrap()[0];
        assert_eq!(
            (a.index(), a.value(), a.value_two(), a.op()),
            (
                0,
                CLONE_NAMESPACE_FLAGS,
                Some(0),
                LinuxSeccompOperator::ScmpCmpMaskedEq
            )
        );
        let clone3 = p
            .syscalls()
            .iter()
            .flatten()
            .find(|s| s.names().contains(&"clone3".to_string()))
            .unwrap();
        assert_eq!(
            (clone3.action(), clone3.errno_ret()),
            (LinuxSeccompAction::ScmpActErrno, Some(libc::ENOSYS as u32))
        );
        assert_eq!(conditional(&p, "personality").len(), PERSONALITIES.len());
    }

    #[test]
    fn capabilities_widen_the_profile() {
        let caps: Capabilities = [Capability::SysAdmin, Capability::SysPtrace]
            .into_iter()
            .collect();
        let p = profile_for("x86_64", &caps);
        for ok in ["mount", "unshare", "setns", "kcmp", "clone", "clone3"] {
            assert_eq!(
                unconditional(&p, ok),
                Some(LinuxSeccompAction::ScmpActAllow),
                "{ok}"
            );
        }
        assert!(conditional(&p, "clone").is_empty());
        assert_eq!(unconditional(&p, "reboot"), None);
        // Each name appears once even when two capabilities open it.
        let caps: Capabilities = [Capability::SysAdmin, Capability::Bpf]
            .into_iter()
            .collect();
        let p = profile_for("x86_64", &caps);
        let bpf = p
            .syscalls()
            .iter()
            .flatten()
            .flat_map(|s| s.names())
            .filter(|n| *n == "bpf")
            .count();
        assert_eq!(bpf, 1);
    }

    #[test]
    fn architectures() {
        let none = Capabilities::new();
        let x86 = profile_for("x86_64", &none);
        assert_eq!(
            x86.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
        );
        assert_eq!(
            unconditional(&x86, "arch_prctl"),
            Some(LinuxSeccompAction::ScmpActAllow)
        );
        assert_eq!(unconditional(&x86, "set_tls"), None);
        let arm = profile_for("aarch64", &none);
        assert_eq!(
            arm.architectures().as_deref(),
            Some(&[Arch::ScmpArchArm, Arch::ScmpArchAarch64][..])
        );
        assert_eq!(
            unconditional(&arm, "set_tls"),
            Some(LinuxSeccompAction::ScmpActAllow)
        );
        assert_eq!(unconditional(&arm, "arch_prctl"), None);
    }

    #[test]
    fn docker_format_profiles_resolve_their_conditions() {
        let profile = serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "archMap": [
                {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}
            ],
            "syscalls": [
                {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "args": [], "comment": "", "includes": {}, "excludes": {}},
                {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_SYS_ADMIN"]},
                 "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
                {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64", "x32"]}},
                {"names": ["set_tls"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm64"]}},
                {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
                {"name": "old_style", "action": "SCMP_ACT_ALLOW"}
            ]
        });
        let names = |p: &LinuxSeccomp| -> Vec<String> {
            p.syscalls()
                .iter()
                .flatten()
                .flat_map(|s| s.names().clone())
                .collect()
        };
        let none = Capabilities::new();
        let p = from_profile_json(profile.clone(), "x86_64", &none, Some((6, 1))).unwrap();
        assert_eq!(
            p.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
        );
        assert_eq!(
            names(&p),
            [
                "read",
                "write",
                "clone",
                "arch_prctl",
                "ptrace",
                "old_style"
            ]
        );
        assert_eq!(p.default_errno_ret(), Some(1));

        let admin: Capabilities = [Capability::SysAdmin].into_iter().collect();
        let p = from_profile_json(profile.clone(), "aarch64", &admin, Some((4, 4))).unwrap();
        assert_eq!(
            p.architectures().as_deref(),
            Some(&[Arch::ScmpArchAarch64, Arch::ScmpArchArm][..])
        );
        assert_eq!(
            names(&p),
            ["read", "write", "mount", "set_tls", "old_style"]
        );

        // An OCI-format profile passes through unchanged.
        let oci = serde_json::to_value(runtime_default_seccomp()).unwrap();
        assert_eq!(
            from_profile_json(oci, "x86_64", &none, None).unwrap(),
            runtime_default_seccomp()
        );
        from_profile_json(serde_json::json!([1]), "x86_64", &none, None).unwrap_err();
        assert_eq!(parse_kernel_version("6.1.0-26-amd64"), Some((6, 1)));
        assert_eq!(parse_kernel_version("4.19"), Some((4, 19)));
        assert_eq!(parse_kernel_version("x"), None);
    }

    #[test]
    fn allow_list_has_no_duplicates() {
        let mut v: Vec<&str> = ALLOWED.to_vec();
        v.sort_unstable();
        let n = v.len();
        v.dedup();
        assert_eq!(v.len(), n);
    }
}

//! Process security settings from a spec `process`: user and groups, capabilities,
//! no_new_privs, seccomp, rlimits, umask, oom_score_adj. Shared by a container's
//! init and by exec'd processes.

use crate::error::{Error, Result};
use crate::spec::capability_from_name;
use crate::sys::seccomp::Filter;
use crate::sys::{CapSets, Syscall};
use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, Capabilities, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator, Process,
};
use std::path::Path;

fn mask(set: &Option<Capabilities>) -> u64 {
    set.iter()
        .flatten()
        .filter_map(|c| capability_from_name(&c.to_string()))
        .fold(0, |m, c| m | (1u64 << c.index()))
}

/// The capability sets a process asks for (no `capabilities` = none at all).
pub fn cap_sets(p: &Process) -> CapSets {
    match p.capabilities() {
        None => CapSets::default(),
        Some(c) => CapSets {
            bounding: mask(c.bounding()),
            effective: mask(c.effective()),
            permitted: mask(c.permitted()),
            inheritable: mask(c.inheritable()),
            ambient: mask(c.ambient()),
        },
    }
}

fn action(a: LinuxSeccompAction, errno: Option<u32>, field: &str) -> Result<ScmpAction> {
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(
            errno
                .and_then(|e| i32::try_from(e).ok())
                .unwrap_or(libc::EPERM),
        ),
        LinuxSeccompAction::ScmpActTrace => {
            ScmpAction::Trace(errno.and_then(|e| u16::try_from(e).ok()).unwrap_or(1))
        }
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(Error::Unsupported {
                field: field.into(),
                msg: "SCMP_ACT_NOTIFY needs a seccomp agent, not implemented".into(),
            })
        }
    })
}

fn arch(a: Arch) -> Option<ScmpArch> {
    Some(match a {
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        _ => return None,
    })
}

fn seccomp_err(field: &str) -> impl Fn(libseccomp::error::SeccompError) -> Error + '_ {
    move |e| Error::spec(field, format!("seccomp: {e}"))
}

/// Compiles `linux.seccomp` with libseccomp. Unknown syscall names are skipped,
/// as profiles list syscalls that only some architectures or kernels have.
pub fn build_seccomp(s: &LinuxSeccomp) -> Result<Filter> {
    let field = "linux.seccomp";
    let default = action(
        s.default_action(),
        s.default_errno_ret(),
        "linux.seccomp.defaultAction",
    )?;
    let mut ctx = ScmpFilterContext::new(default).map_err(seccomp_err(field))?;
    // no_new_privs is the spec's decision, applied separately.
    ctx.set_ctl_nnp(false).map_err(seccomp_err(field))?;
    for a in s.architectures().iter().flatten() {
        if let Some(a) = arch(*a) {
            if a != ScmpArch::native() {
                ctx.add_arch(a)
                    .map_err(seccomp_err("linux.seccomp.architectures"))?;
            }
        }
    }
    let mut rules = 0;
    for (i, sc) in s.syscalls().iter().flatten().enumerate() {
        let f = format!("linux.seccomp.syscalls[{i}]");
        let act = action(sc.action(), sc.errno_ret(), &format!("{f}.action"))?;
        if act == default {
            continue;
        }
        let mut cmps = Vec::new();
        for (j, a) in sc.args().iter().flatten().enumerate() {
            let op = match a.op() {
                LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
                LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
                LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
                LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
                LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
                LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
                LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(a.value()),
            };
            let datum = match a.op() {
                LinuxSeccompOperator::ScmpCmpMaskedEq => a.value_two().unwrap_or(0),
                _ => a.value(),
            };
            if a.index() > 5 {
                return Err(Error::spec(format!("{f}.args[{j}].index"), "must be 0..5"));
            }
            // Checked above: 0..=5.
            let index = u32::try_from(a.index()).unwrap_or(u32::MAX);
            cmps.push(ScmpArgCompare::new(index, op, datum));
        }
        for name in sc.names() {
            let Ok(nr) = ScmpSyscall::from_name(name) else {
                continue;
            };
            ctx.add_rule_conditional(act, nr, &cmps)
                .map_err(seccomp_err(&f))?;
            rules += 1;
        }
    }
    Ok(Filter {
        program: Some(compile(&ctx).map_err(|e| Error::sys("linux.seccomp: compile", e))?),
        summary: format!("default={:?} rules={rules}", s.default_action()),
    })
}

/// The BPF program libseccomp would load for `ctx`. Generating it is most of
/// the cost of a seccomp profile (several ms for RuntimeDefault with its three
/// x86 ABIs), so it is done here, where the caller can overlap it with other
/// work, rather than inside libseccomp's load.
fn compile(ctx: &ScmpFilterContext) -> std::io::Result<Vec<libc::sock_filter>> {
    use std::io::{Read, Seek};
    // libseccomp 2.5 exports to an fd only; a memfd keeps it in memory.
    let fd = nix::sys::memfd::memfd_create(
        c"berth-seccomp",
        nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
    )?;
    ctx.export_bpf(&fd).map_err(std::io::Error::other)?;
    let mut f = std::fs::File::from(fd);
    f.rewind()?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)?;
    program_from_bytes(&bytes)
}

/// Parses a BPF program as the kernel takes it: `struct sock_filter { u16
/// code; u8 jt; u8 jf; u32 k; }` in native byte order.
pub(crate) fn program_from_bytes(bytes: &[u8]) -> std::io::Result<Vec<libc::sock_filter>> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(8) || bytes.len() / 8 > usize::from(u16::MAX)
    {
        return Err(std::io::Error::other(format!(
            "{} bytes are not a bpf program",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|i| libc::sock_filter {
            code: u16::from_ne_bytes([i[0], i[1]]),
            jt: i[2],
            jf: i[3],
            k: u32::from_ne_bytes([i[4], i[5], i[6], i[7]]),
        })
        .collect())
}

/// The inverse of [`program_from_bytes`].
pub(crate) fn program_to_bytes(program: &[libc::sock_filter]) -> Vec<u8> {
    let mut out = Vec::with_capacity(program.len() * 8);
    for i in program {
        out.extend_from_slice(&i.code.to_ne_bytes());
        out.extend_from_slice(&[i.jt, i.jf]);
        out.extend_from_slice(&i.k.to_ne_bytes());
    }
    out
}

/// Options that change how security settings are applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SecurityOptions {
    /// Clamp `oomScoreAdj` to the current value instead of failing when lowering
    /// it is not allowed (no CAP_SYS_RESOURCE).
    pub restrict_oom_score_adj: bool,
}

/// Writes oom_score_adj for the calling process.
pub fn set_oom_score_adj(
    sys: &dyn Syscall,
    p: &Process,
    field: &str,
    opts: SecurityOptions,
) -> Result<()> {
    let Some(want) = p.oom_score_adj() else {
        return Ok(());
    };
    let file = Path::new("/proc/self/oom_score_adj");
    let cur: i32 = std::fs::read_to_string(file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let value = if opts.restrict_oom_score_adj && want < cur {
        cur
    } else {
        want
    };
    sys.write_file(file, &value.to_string()).map_err(|e| {
        if value < cur {
            Error::spec(
                format!("{field}.oomScoreAdj"),
                format!("cannot lower oom_score_adj from {cur} to {value} ({e}); enable restrict_oom_score_adj to clamp"),
            )
        } else {
            Error::sys(format!("{field}.oomScoreAdj: write {value}"), e)
        }
    })
}

/// Asks AppArmor to confine the next exec with the spec's profile. The validator
/// has already refused profiles on hosts without AppArmor.
pub fn set_apparmor(sys: &dyn Syscall, p: &Process, field: &str) -> Result<()> {
    let Some(profile) = p
        .apparmor_profile()
        .as_deref()
        .filter(|a| !a.is_empty() && *a != "unconfined")
    else {
        return Ok(());
    };
    let data = format!("exec {profile}");
    let modern = Path::new("/proc/self/attr/apparmor/exec");
    let r = match sys.write_file(modern, &data) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            sys.write_file(Path::new("/proc/self/attr/exec"), &data)
        }
        r => r,
    };
    r.map_err(|e| Error::sys(format!("{field}.apparmorProfile: set {profile}"), e))
}

/// Sets the SELinux label the next exec runs with. The validator has already
/// refused labels on hosts without SELinux.
pub fn set_selinux_label(sys: &dyn Syscall, p: &Process, field: &str) -> Result<()> {
    match p.selinux_label().as_deref().filter(|l| !l.is_empty()) {
        None => Ok(()),
        Some(label) => sys
            .write_file(Path::new("/proc/self/attr/exec"), label)
            .map_err(|e| Error::sys(format!("{field}.selinuxLabel: set {label}"), e)),
    }
}

/// Applies rlimits.
pub fn set_rlimits(sys: &dyn Syscall, p: &Process, field: &str) -> Result<()> {
    for (i, rl) in p.rlimits().iter().flatten().enumerate() {
        let name = serde_json::to_value(rl.typ())
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        let res = crate::spec::rlimit_resource(&name)
            .ok_or_else(|| Error::spec(format!("{field}.rlimits[{i}].type"), "unknown rlimit"))?;
        sys.setrlimit(res, rl.soft(), rl.hard())
            .map_err(|e| Error::sys(format!("{field}.rlimits[{i}]: setrlimit {name}"), e))?;
    }
    Ok(())
}

/// Switches to the spec's user and groups and sets the five capability sets,
/// plus no_new_privs and seccomp in the order that keeps them loadable:
/// without no_new_privs the filter needs CAP_SYS_ADMIN, so it goes in before the
/// capabilities are dropped; with it, as late as possible.
pub fn set_identity(
    sys: &dyn Syscall,
    p: &Process,
    seccomp: Option<&Filter>,
    field: &str,
    setgroups_allowed: bool,
) -> Result<()> {
    let nnp = p.no_new_privileges() == Some(true);
    if let (Some(f), false) = (seccomp, nnp) {
        sys.load_seccomp(f)
            .map_err(|e| Error::sys("linux.seccomp: load filter", e))?;
    }
    let user = p.user();
    if setgroups_allowed {
        let gids = user.additional_gids().clone().unwrap_or_default();
        sys.setgroups(&gids).map_err(|e| {
            Error::sys(
                format!("{field}.user.additionalGids: setgroups {gids:?}"),
                e,
            )
        })?;
    }
    sys.setgid(user.gid())
        .map_err(|e| Error::sys(format!("{field}.user.gid: setgid {}", user.gid()), e))?;
    sys.set_keep_caps(true)
        .map_err(|e| Error::sys("prctl(PR_SET_KEEPCAPS)", e))?;
    sys.setuid(user.uid())
        .map_err(|e| Error::sys(format!("{field}.user.uid: setuid {}", user.uid()), e))?;
    sys.set_keep_caps(false)
        .map_err(|e| Error::sys("prctl(PR_SET_KEEPCAPS)", e))?;
    sys.set_capabilities(&cap_sets(p))
        .map_err(|e| Error::sys(format!("{field}.capabilities: set"), e))?;
    if nnp {
        sys.set_no_new_privs()
            .map_err(|e| Error::sys(format!("{field}.noNewPrivileges"), e))?;
        if let Some(f) = seccomp {
            sys.load_seccomp(f)
                .map_err(|e| Error::sys("linux.seccomp: load filter", e))?;
        }
    }
    sys.umask(user.umask().unwrap_or(0o022));
    Ok(())
}

/// Finds the executable for `args[0]` in the (new) root, using PATH from `env`.
pub fn resolve_executable(p: &Process, field: &str) -> Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let arg0 = p
        .args()
        .as_ref()
        .and_then(|a| a.first())
        .ok_or_else(|| Error::spec(format!("{field}.args"), "empty"))?;
    let is_exec = |path: &Path| {
        std::fs::metadata(path)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if arg0.contains('/') {
        let path = if Path::new(arg0).is_absolute() {
            Path::new(arg0).to_path_buf()
        } else {
            p.cwd().join(arg0)
        };
        return if is_exec(&path) {
            Ok(path)
        } else {
            Err(Error::spec(
                format!("{field}.args[0]"),
                format!("{arg0}: no such executable in the container"),
            ))
        };
    }
    let path_var = p
        .env()
        .iter()
        .flatten()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    path_var
        .split(':')
        .map(|d| Path::new(d).join(arg0))
        .find(|c| is_exec(c))
        .ok_or_else(|| {
            Error::spec(
                format!("{field}.args[0]"),
                format!("{arg0}: executable not found in PATH {path_var}"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fake::RecordingSyscall;

    fn process(v: serde_json::Value) -> Process {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn drops_to_user_with_groups_then_sets_caps() {
        let p = process(serde_json::json!({
            "cwd": "/", "args": ["x"],
            "user": {"uid": 1000, "gid": 1000, "additionalGids": [10, 20]},
            "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"],
                             "permitted": ["CAP_KILL"]},
            "noNewPrivileges": true
        }));
        let sys = RecordingSyscall::new();
        set_identity(&sys, &p, None, "process", true).unwrap();
        assert_eq!(
            sys.calls(),
            vec![
                "setgroups [10, 20]",
                "setgid 1000",
                "set_keep_caps true",
                "setuid 1000",
                "set_keep_caps false",
                "set_capabilities bnd=0x20 eff=0x20 prm=0x20 inh=0x0 amb=0x0",
                "set_no_new_privs",
                "umask 22",
            ]
        );
    }

    #[test]
    fn seccomp_goes_first_without_no_new_privs() {
        let p =
            process(serde_json::json!({"cwd": "/", "args": ["x"], "user": {"uid": 0, "gid": 0}}));
        let sys = RecordingSyscall::new();
        let f = Filter {
            program: None,
            summary: "test".into(),
        };
        set_identity(&sys, &p, Some(&f), "process", true).unwrap();
        assert_eq!(sys.calls()[0], "load_seccomp test");
    }

    #[test]
    fn setuid_failure_names_the_field() {
        let p =
            process(serde_json::json!({"cwd": "/", "args": ["x"], "user": {"uid": 7, "gid": 0}}));
        let sys = RecordingSyscall::new();
        sys.fail_on("setuid", libc::EPERM);
        let e = set_identity(&sys, &p, None, "process", true).unwrap_err();
        assert!(
            e.to_string().starts_with("process.user.uid: setuid 7"),
            "{e}"
        );
    }

    #[test]
    fn builds_a_seccomp_filter_from_a_spec() {
        let s: LinuxSeccomp = serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [
                {"names": ["mkdir", "mkdirat", "no_such_syscall"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}
            ]
        }))
        .unwrap();
        let f = build_seccomp(&s).unwrap();
        assert_eq!(f.summary, "default=ScmpActAllow rules=3");
        // Compiled ahead of the load: a real program, starting with the
        // architecture check (a load of seccomp_data.arch, offset 4) and
        // returning an action on every path.
        let prog = f.program.as_ref().unwrap();
        assert!(prog.len() > 4, "{} instructions", prog.len());
        assert_eq!(
            (prog[0].code, prog[0].k),
            (
                u16::try_from(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS).unwrap(),
                4
            )
        );
        assert!(prog
            .iter()
            .any(|i| i.code == u16::try_from(libc::BPF_RET | libc::BPF_K).unwrap()));
    }

    #[test]
    fn apparmor_profile_is_set_for_the_next_exec() {
        let p = process(
            serde_json::json!({"cwd": "/", "args": ["x"], "user": {"uid": 0, "gid": 0},
            "apparmorProfile": "berth-default"}),
        );
        let sys = RecordingSyscall::new();
        set_apparmor(&sys, &p, "process").unwrap();
        assert_eq!(
            sys.calls(),
            vec!["write_file /proc/self/attr/apparmor/exec exec berth-default"]
        );
        let sys = RecordingSyscall::new();
        sys.fail_on("write_file /proc/self/attr/apparmor", libc::ENOENT);
        set_apparmor(&sys, &p, "process").unwrap();
        assert_eq!(
            sys.calls()[1],
            "write_file /proc/self/attr/exec exec berth-default"
        );
    }

    #[test]
    fn oom_score_adj_clamps_when_restricted() {
        let p = process(
            serde_json::json!({"cwd": "/", "args": ["x"], "user": {"uid": 0, "gid": 0}, "oomScoreAdj": -1000}),
        );
        let cur: i32 = std::fs::read_to_string("/proc/self/oom_score_adj")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let sys = RecordingSyscall::new();
        set_oom_score_adj(
            &sys,
            &p,
            "process",
            SecurityOptions {
                restrict_oom_score_adj: true,
            },
        )
        .unwrap();
        assert_eq!(
            sys.calls(),
            vec![format!(
                "write_file /proc/self/oom_score_adj {}",
                cur.max(-1000)
            )]
        );
        let sys = RecordingSyscall::new();
        sys.fail_on("write_file", libc::EACCES);
        if cur > -1000 {
            let e = set_oom_score_adj(&sys, &p, "process", SecurityOptions::default()).unwrap_err();
            assert!(
                e.to_string()
                    .starts_with("process.oomScoreAdj: cannot lower"),
                "{e}"
            );
        }
    }
}

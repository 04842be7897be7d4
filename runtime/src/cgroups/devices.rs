//! Device rules on cgroup v2: an eBPF `BPF_PROG_TYPE_CGROUP_DEVICE` program,
//! built here from the OCI rules and attached to the container's cgroup.
//!
//! The kernel calls the program for every open and mknod of a device node in
//! the cgroup with `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major;
//! u32 minor; }`, where `access_type` is `access << 16 | type` (type: 1 block,
//! 2 char; access bits: 1 mknod, 2 read, 4 write). Returning 1 allows.
//!
//! Semantics follow the v1 device cgroup the OCI rules were written for: the
//! last rule that matches decides, so the program tests the rules from last to
//! first and returns the verdict of the first match; an allow rule matches
//! when it grants every requested access bit, a deny rule when it denies any
//! of them; nothing matching means deny. Like the v1 path, a rule list with a
//! deny gets the devices the runtime itself creates appended as allows.
//!
//! Replacing a program (an update) attaches the new one before detaching the
//! old, so there is no moment without a filter.

use super::default_device_rules;
use crate::error::{Error, Result};
use crate::sys::bpf::{self, BpfInsn};
use oci_spec::runtime::LinuxDeviceCgroup;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

const TYPE_BLOCK: i32 = 1;
const TYPE_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

// Opcodes (include/uapi/linux/bpf_common.h + bpf.h).
const LDX_MEM_W: u8 = 0x61; // dst = *(u32 *)(src + off)
const ALU64_MOV_K: u8 = 0xb7;
const ALU64_MOV_X: u8 = 0xbf;
const ALU64_AND_K: u8 = 0x57;
const ALU64_RSH_K: u8 = 0x77;
const JMP_JNE_K: u8 = 0x55;
const JMP_JEQ_K: u8 = 0x15;
const JMP_JSET_K: u8 = 0x45;
const JMP_EXIT: u8 = 0x95;

/// One rule, normalised: `None` is a wildcard.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    allow: bool,
    typ: Option<i32>,
    major: Option<i32>,
    minor: Option<i32>,
    access: i32,
}

fn parse_rule(r: &LinuxDeviceCgroup, i: usize) -> Result<Rule> {
    let field = || format!("linux.resources.devices[{i}]");
    let typ = match r.typ().map(|t| t.as_str().to_string()).as_deref() {
        None | Some("a") => None,
        Some("c") | Some("u") => Some(TYPE_CHAR),
        Some("b") => Some(TYPE_BLOCK),
        Some(other) => {
            return Err(Error::spec(
                format!("{}.type", field()),
                format!("{other:?} is not a, b or c"),
            ))
        }
    };
    let mut access = 0;
    for ch in r.access().as_deref().unwrap_or("rwm").chars() {
        access |= match ch {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => {
                return Err(Error::spec(
                    format!("{}.access", field()),
                    format!("{ch:?} is not r, w or m"),
                ))
            }
        };
    }
    // Negative is the wildcard; device numbers are far below i32::MAX (the
    // kernel's major has 12 bits, its minor 20), and the program compares
    // them as 32-bit immediates.
    let num = |v: Option<i64>, name: &str| match v.filter(|v| *v >= 0) {
        None => Ok(None),
        Some(n) => i32::try_from(n).map(Some).map_err(|_| {
            Error::spec(
                format!("{}.{name}", field()),
                format!("{n} is out of range"),
            )
        }),
    };
    Ok(Rule {
        allow: r.allow(),
        typ,
        major: num(r.major(), "major")?,
        minor: num(r.minor(), "minor")?,
        access,
    })
}

fn parse_default(line: &str) -> Rule {
    // "c 1:3 rwm" / "c 136:* rwm", from our own table.
    let mut it = line.split_whitespace();
    let typ = match it.next() {
        Some("b") => Some(TYPE_BLOCK),
        Some("c") => Some(TYPE_CHAR),
        _ => None,
    };
    let (maj, min) = it
        .next()
        .and_then(|n| n.split_once(':'))
        .unwrap_or(("*", "*"));
    Rule {
        allow: true,
        typ,
        major: maj.parse().ok(),
        minor: min.parse().ok(),
        access: ACC_READ | ACC_WRITE | ACC_MKNOD,
    }
}

/// The rules in evaluation order (OCI order plus the runtime's defaults), or
/// `None` when they allow every device and no program is needed.
fn effective_rules(rules: &[LinuxDeviceCgroup]) -> Result<Option<Vec<Rule>>> {
    let mut out = rules
        .iter()
        .enumerate()
        .map(|(i, r)| parse_rule(r, i))
        .collect::<Result<Vec<_>>>()?;
    if out.iter().any(|r| !r.allow) {
        out.extend(default_device_rules().iter().map(|l| parse_default(l)));
    }
    // Everything after the last "allow all" can only allow more.
    let full = ACC_READ | ACC_WRITE | ACC_MKNOD;
    let wildcard = |r: &Rule| r.typ.is_none() && r.major.is_none() && r.minor.is_none();
    if let Some(last) = out.iter().rposition(|r| wildcard(r) && r.access == full) {
        if out[last].allow && out[last..].iter().all(|r| r.allow) {
            return Ok(None);
        }
    }
    Ok(Some(out))
}

/// The device filter program for `rules` (in evaluation order).
fn program(rules: &[Rule]) -> Result<Vec<BpfInsn>> {
    let i = BpfInsn::new;
    // r2 = type, r3 = access, r4 = major, r5 = minor.
    let mut p = vec![
        i(LDX_MEM_W, 2, 1, 0, 0),
        i(ALU64_AND_K, 2, 0, 0, 0xffff),
        i(LDX_MEM_W, 3, 1, 0, 0),
        i(ALU64_RSH_K, 3, 0, 0, 16),
        i(LDX_MEM_W, 4, 1, 4, 0),
        i(LDX_MEM_W, 5, 1, 8, 0),
    ];
    for r in rules.iter().rev() {
        // Each test jumps past the rest of this rule's block when it fails.
        let mut tests: Vec<Vec<BpfInsn>> = Vec::new();
        if let Some(t) = r.typ {
            tests.push(vec![i(JMP_JNE_K, 2, 0, 0, t)]);
        }
        if r.allow {
            // Skip unless every requested bit is granted.
            let missing = !r.access & (ACC_READ | ACC_WRITE | ACC_MKNOD);
            if missing != 0 {
                tests.push(vec![i(JMP_JSET_K, 3, 0, 0, missing)]);
            }
        } else {
            // Skip unless some requested bit is denied.
            tests.push(vec![
                i(ALU64_MOV_X, 6, 3, 0, 0),
                i(ALU64_AND_K, 6, 0, 0, r.access),
                i(JMP_JEQ_K, 6, 0, 0, 0),
            ]);
        }
        if let Some(m) = r.major {
            tests.push(vec![i(JMP_JNE_K, 4, 0, 0, m)]);
        }
        if let Some(m) = r.minor {
            tests.push(vec![i(JMP_JNE_K, 5, 0, 0, m)]);
        }
        let verdict = [
            i(ALU64_MOV_K, 0, 0, 0, i32::from(r.allow)),
            i(JMP_EXIT, 0, 0, 0, 0),
        ];
        let mut left: usize = tests.iter().map(Vec::len).sum::<usize>() + verdict.len();
        for t in tests {
            left -= t.len();
            let n = t.len();
            for (k, mut ins) in t.into_iter().enumerate() {
                if k + 1 == n {
                    // The jump: past the remaining tests and the verdict.
                    ins.off = i16::try_from(left).map_err(|_| {
                        Error::spec(
                            "linux.resources.devices",
                            "too many device rules for one filter program",
                        )
                    })?;
                }
                p.push(ins);
            }
        }
        p.extend(verdict);
    }
    p.push(i(ALU64_MOV_K, 0, 0, 0, 0));
    p.push(i(JMP_EXIT, 0, 0, 0, 0));
    Ok(p)
}

fn open_dir(dir: &Path) -> Result<OwnedFd> {
    std::fs::File::open(dir)
        .map(OwnedFd::from)
        .map_err(|e| Error::Cgroup {
            path: dir.into(),
            msg: format!("open: {e}"),
        })
}

/// Makes `rules` the device filter of the cgroup at `dir`, replacing any
/// filter attached there before.
pub(crate) fn apply(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    let rules = effective_rules(rules)?;
    let cg = open_dir(dir)?;
    let err = |op: &str, e: std::io::Error| Error::Cgroup {
        path: dir.into(),
        msg: format!("{op}: {e}"),
    };
    let old = bpf::query_cgroup_device(cg.as_fd()).map_err(|e| err("query device programs", e))?;
    if let Some(rules) = rules {
        let insns = program(&rules)?;
        let prog = bpf::load_cgroup_device_prog(&insns, "Apache-2.0", "berth_devices")
            .map_err(|e| err("load the device program", e))?;
        bpf::attach_cgroup_device(cg.as_fd(), prog.as_fd(), bpf::BPF_F_ALLOW_MULTI)
            .map_err(|e| err("attach the device program", e))?;
    }
    for id in old {
        // A program that went away meanwhile is as good as detached.
        let Ok(p) = bpf::prog_fd_by_id(id) else {
            continue;
        };
        match bpf::detach_cgroup_device(cg.as_fd(), p.as_fd()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(err("detach the previous device program", e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    fn rule(
        allow: bool,
        typ: &str,
        major: Option<i64>,
        minor: Option<i64>,
        access: &str,
    ) -> LinuxDeviceCgroup {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .typ(
                serde_json::from_value::<oci_spec::runtime::LinuxDeviceType>(serde_json::json!(
                    typ
                ))
                .unwrap(),
            )
            .access(access);
        if let Some(m) = major {
            b = b.major(m);
        }
        if let Some(m) = minor {
            b = b.minor(m);
        }
        b.build().unwrap()
    }

    /// Runs the program the way the kernel would, for one device access.
    fn eval(p: &[BpfInsn], typ: i32, access: i32, major: u32, minor: u32) -> u64 {
        let ctx = [
            (access.unsigned_abs() << 16) | typ.unsigned_abs(),
            major,
            minor,
        ];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let ins = p[pc];
            let (dst, src) = ((ins.regs & 0x0f) as usize, (ins.regs >> 4) as usize);
            // The kernel sign-extends a 32-bit immediate to 64 bits.
            let imm = u64::from_ne_bytes(i64::from(ins.imm).to_ne_bytes());
            let mut next = pc + 1;
            let jump = |cond: bool| {
                if cond {
                    pc + 1 + usize::try_from(ins.off).expect("forward jumps only")
                } else {
                    pc + 1
                }
            };
            match ins.code {
                LDX_MEM_W => {
                    assert_eq!(src, 1);
                    r[dst] = u64::from(ctx[usize::try_from(ins.off).unwrap() / 4]);
                }
                ALU64_MOV_K => r[dst] = imm,
                ALU64_MOV_X => r[dst] = r[src],
                ALU64_AND_K => r[dst] &= imm,
                ALU64_RSH_K => r[dst] >>= imm,
                JMP_JNE_K => next = jump(r[dst] != imm),
                JMP_JEQ_K => next = jump(r[dst] == imm),
                JMP_JSET_K => next = jump(r[dst] & imm != 0),
                JMP_EXIT => return r[0],
                c => panic!("unexpected opcode {c:#x}"),
            }
            pc = next;
        }
    }

    #[test]
    fn deny_all_then_allows_behaves_like_the_v1_device_cgroup() {
        let rules = vec![
            rule(false, "a", None, None, "rwm"),
            rule(true, "c", Some(10), Some(200), "rw"),
            rule(true, "b", Some(8), None, "r"),
            rule(false, "c", Some(10), Some(200), "w"),
        ];
        let p = program(&effective_rules(&rules).unwrap().unwrap()).unwrap();
        let rw = ACC_READ | ACC_WRITE;
        // The runtime's own devices come with every deny.
        assert_eq!(eval(&p, TYPE_CHAR, rw, 1, 3), 1, "/dev/null");
        assert_eq!(eval(&p, TYPE_CHAR, ACC_MKNOD, 1, 3), 1, "mknod /dev/null");
        assert_eq!(eval(&p, TYPE_CHAR, rw, 136, 7), 1, "a pts");
        // Not listed.
        assert_eq!(eval(&p, TYPE_CHAR, ACC_READ, 1, 11), 0, "/dev/kmsg");
        assert_eq!(eval(&p, TYPE_BLOCK, ACC_MKNOD, 7, 0), 0, "mknod loop0");
        // Read of any 8:* block device; not write, not mknod.
        assert_eq!(eval(&p, TYPE_BLOCK, ACC_READ, 8, 1), 1);
        assert_eq!(eval(&p, TYPE_BLOCK, rw, 8, 1), 0);
        // The later deny of w on 10:200 wins over the earlier rw allow.
        assert_eq!(eval(&p, TYPE_CHAR, ACC_READ, 10, 200), 1);
        assert_eq!(eval(&p, TYPE_CHAR, rw, 10, 200), 0);
        assert_eq!(eval(&p, TYPE_CHAR, ACC_READ, 10, 201), 0);
    }

    #[test]
    fn allow_all_needs_no_program_and_deny_all_denies_everything_else() {
        let privileged = vec![
            rule(false, "a", None, None, "rwm"),
            rule(true, "a", None, None, "rwm"),
        ];
        assert_eq!(effective_rules(&privileged).unwrap(), None);
        let deny = vec![rule(false, "a", None, None, "rwm")];
        let p = program(&effective_rules(&deny).unwrap().unwrap()).unwrap();
        assert_eq!(eval(&p, TYPE_BLOCK, ACC_READ, 8, 0), 0);
        assert_eq!(eval(&p, TYPE_CHAR, ACC_READ, 1, 9), 1, "/dev/urandom");
    }

    #[test]
    fn bad_rules_name_the_field() {
        let mut r = rule(true, "c", Some(1), Some(3), "rwm");
        r.set_access(Some("rwx".into()));
        let e = effective_rules(&[r]).unwrap_err().to_string();
        assert!(e.contains("linux.resources.devices[0].access"), "{e}");
    }
}

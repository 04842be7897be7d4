//! The bpf(2) calls that cgroup v2 device rules need: load a
//! `BPF_PROG_TYPE_CGROUP_DEVICE` program, attach it to a cgroup, list and detach
//! the programs already there.
//!
//! Why raw bpf(2) and not a crate: a device filter is a few dozen instructions
//! built at run time (see `cgroups::devices`), with no ELF object, maps or
//! BTF; aya or libbpf-rs would bring a loader for all of those to make five
//! calls. The attribute layouts below are the kernel's `union bpf_attr`
//! members for each command (include/uapi/linux/bpf.h), which are stable ABI.

// Kernel ABI: bpf_attr and ifreq fields, syscall results and fds have the
// kernel's fixed widths and signedness, and fds and pids fit in i32 (below
// RLIMIT_NOFILE and pid_max). The casts here convert between those words.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `BPF_PROG_LOAD`.
pub const BPF_PROG_LOAD: libc::c_int = 5;
/// `BPF_PROG_ATTACH`.
pub const BPF_PROG_ATTACH: libc::c_int = 8;
/// `BPF_PROG_DETACH`.
pub const BPF_PROG_DETACH: libc::c_int = 9;
/// `BPF_PROG_GET_FD_BY_ID`.
pub const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
/// `BPF_PROG_QUERY`.
pub const BPF_PROG_QUERY: libc::c_int = 16;
/// `BPF_PROG_TYPE_CGROUP_DEVICE`.
pub const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
/// `BPF_CGROUP_DEVICE` (the attach type).
pub const BPF_CGROUP_DEVICE: u32 = 6;
/// `BPF_F_ALLOW_MULTI`: several programs per cgroup, and descendants may add
/// their own (each must allow an access).
pub const BPF_F_ALLOW_MULTI: u32 = 2;

/// One eBPF instruction (`struct bpf_insn`): opcode, dst/src registers in one
/// byte (dst in the low nibble), a 16-bit offset and a 32-bit immediate.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BpfInsn {
    pub code: u8,
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

impl BpfInsn {
    /// An instruction with registers `dst` and `src`.
    pub const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        BpfInsn {
            code,
            regs: (src << 4) | (dst & 0x0f),
            off,
            imm,
        }
    }
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// bpf(2) with an attribute struct of type `T`.
fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, initialised #[repr(C)] struct laid out as the
    // kernel's bpf_attr member for `cmd`, and its size is passed along, so the
    // kernel reads (and for QUERY writes) only within it; pointers inside it
    // are set by the callers to buffers that outlive this call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: bpf(2) just returned this fd to us and nothing else holds it.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

/// Loads a cgroup device program; on a verifier refusal the error carries the
/// verifier's log.
pub fn load_cgroup_device_prog(
    insns: &[BpfInsn],
    license: &str,
    name: &str,
) -> io::Result<OwnedFd> {
    let license = CString::new(license).map_err(|_| io::ErrorKind::InvalidInput)?;
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        expected_attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    for (d, s) in attr.prog_name.iter_mut().zip(name.bytes().take(15)) {
        *d = s;
    }
    match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => Ok(owned(fd)),
        Err(first) => {
            // Load again with a log only on failure: the log costs verifier time.
            let mut log = vec![0u8; 64 * 1024];
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            match bpf(BPF_PROG_LOAD, &mut attr) {
                Ok(fd) => Ok(owned(fd)),
                Err(_) => {
                    let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
                    let text = String::from_utf8_lossy(&log[..end]);
                    Err(io::Error::new(
                        first.kind(),
                        format!("{first}; verifier: {}", text.trim()),
                    ))
                }
            }
        }
    }
}

/// Attaches `prog` to the cgroup open at `cgroup` as its device filter.
pub fn attach_cgroup_device(cgroup: BorrowedFd, prog: BorrowedFd, flags: u32) -> io::Result<()> {
    let mut attr = AttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: flags,
        ..Default::default()
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map(|_| ())
}

/// Detaches `prog` from the device hook of the cgroup open at `cgroup`.
pub fn detach_cgroup_device(cgroup: BorrowedFd, prog: BorrowedFd) -> io::Result<()> {
    let mut attr = AttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    bpf(BPF_PROG_DETACH, &mut attr).map(|_| ())
}

/// The ids of the device programs attached to this very cgroup (not its
/// ancestors').
pub fn query_cgroup_device(cgroup: BorrowedFd) -> io::Result<Vec<u32>> {
    // BPF_F_ALLOW_MULTI allows up to 64 programs per hook.
    let mut ids = vec![0u32; 64];
    let mut attr = QueryAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    };
    bpf(BPF_PROG_QUERY, &mut attr)?;
    ids.truncate((attr.prog_cnt as usize).min(64));
    Ok(ids)
}

/// An fd for the loaded program with this id.
pub fn prog_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    let mut attr = GetFdAttr {
        prog_id: id,
        ..Default::default()
    };
    bpf(BPF_PROG_GET_FD_BY_ID, &mut attr).map(owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_layouts_match_the_kernel_abi() {
        // Offsets from include/uapi/linux/bpf.h.
        assert_eq!(std::mem::size_of::<BpfInsn>(), 8);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, log_buf), 32);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(std::mem::offset_of!(QueryAttr, prog_ids), 16);
        assert_eq!(std::mem::offset_of!(QueryAttr, prog_cnt), 24);
        assert_eq!(std::mem::offset_of!(AttachAttr, replace_bpf_fd), 16);
        let i = BpfInsn::new(0x61, 2, 1, 4, 0);
        assert_eq!(i.regs, 0x12);
    }
}

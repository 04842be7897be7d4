//! The per-container monitor's steady state. After `berth-monitor create` has
//! made the container it execs `berth-monitor-serve` (built from `runtime/lite/`
//! by build.rs, no standard library, no libc), which owns the container's stdio,
//! writes the CRI log, serves attach, reaps the init and records its exit.
//! The modules here are core + `alloc` so that binary and this library (its
//! tests, berthd's attach client) share them, except `command.rs`: berthd's
//! command line for `berth-monitor`, which has the standard library on both
//! sides. Each process boundary's arguments are defined once, in
//! `command.rs` and `serve_args.rs`, over the codec in `argv.rs`.

pub mod argv;
pub mod attach;
pub mod command;
pub mod cri_log;
pub mod failure;
pub mod rfc3339;
pub mod serve_args;

/// Where a monitor (in its state dir) or a pause init (in its pin dir) writes
/// a copy of [`SERVE_BIN`] to exec when the host forbids executing memfds.
pub const SERVE_FALLBACK_FILE: &str = "berth-monitor-serve";

/// The berth-monitor-serve executable, built by build.rs from `runtime/lite/`.
pub const SERVE_BIN: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/berth-monitor-serve"));

/// berth-monitor-serve's system call numbers and constants, checked below.
#[cfg(test)]
#[path = "../../lite/nr.rs"]
#[allow(dead_code)]
mod lite_nr;

#[cfg(test)]
mod tests {
    use super::lite_nr as nr;

    #[test]
    fn serve_binary_is_a_static_executable_with_no_interpreter() {
        let b = super::SERVE_BIN;
        assert_eq!(&b[..4], b"\x7fELF");
        // e_type ET_EXEC (not ET_DYN: no relocations to make private copies).
        assert_eq!(u16::from_le_bytes([b[16], b[17]]), 2);
        // No PT_INTERP (3) among the program headers: no dynamic loader, no libc.
        let phoff = usize::try_from(u64::from_le_bytes(b[32..40].try_into().unwrap())).unwrap();
        let phentsize = u16::from_le_bytes([b[54], b[55]]) as usize;
        let phnum = u16::from_le_bytes([b[56], b[57]]) as usize;
        for i in 0..phnum {
            let off = phoff + i * phentsize;
            let p_type = u32::from_le_bytes(b[off..off + 4].try_into().unwrap());
            assert_ne!(p_type, 3, "program header {i} is PT_INTERP");
        }
        assert!(b.len() < 256 * 1024, "{} bytes", b.len());
    }

    #[test]
    fn serve_binary_uses_the_kernels_numbers() {
        let numbers: [(usize, libc::c_long); 20] = [
            (nr::READ, libc::SYS_read),
            (nr::WRITE, libc::SYS_write),
            (nr::CLOSE, libc::SYS_close),
            (nr::MMAP, libc::SYS_mmap),
            (nr::MUNMAP, libc::SYS_munmap),
            (nr::RT_SIGPROCMASK, libc::SYS_rt_sigprocmask),
            (nr::IOCTL, libc::SYS_ioctl),
            (nr::WAIT4, libc::SYS_wait4),
            (nr::FCNTL, libc::SYS_fcntl),
            (nr::FSYNC, libc::SYS_fsync),
            (nr::PRCTL, libc::SYS_prctl),
            (nr::CLOCK_GETTIME, libc::SYS_clock_gettime),
            (nr::EXIT_GROUP, libc::SYS_exit_group),
            (nr::OPENAT, libc::SYS_openat),
            (nr::MKDIRAT, libc::SYS_mkdirat),
            (nr::UNLINKAT, libc::SYS_unlinkat),
            (nr::RENAMEAT, libc::SYS_renameat),
            (nr::PPOLL, libc::SYS_ppoll),
            (nr::ACCEPT4, libc::SYS_accept4),
            (nr::SIGNALFD4, libc::SYS_signalfd4),
        ];
        for (i, (ours, theirs)) in numbers.iter().enumerate() {
            assert_eq!(libc::c_long::try_from(*ours).unwrap(), *theirs, "entry {i}");
        }
        let flags: [(usize, libc::c_int); 25] = [
            (nr::O_RDONLY, libc::O_RDONLY),
            (nr::F_GETFL, libc::F_GETFL),
            (nr::F_SETFL, libc::F_SETFL),
            (nr::SIG_BLOCK, libc::SIG_BLOCK),
            (nr::WNOHANG, libc::WNOHANG),
            (nr::CLOCK_REALTIME, libc::CLOCK_REALTIME),
            (nr::CLOCK_MONOTONIC, libc::CLOCK_MONOTONIC),
            (nr::PROT_READ, libc::PROT_READ),
            (nr::PROT_WRITE, libc::PROT_WRITE),
            (nr::MAP_PRIVATE, libc::MAP_PRIVATE),
            (nr::AT_FDCWD.cast_unsigned(), libc::AT_FDCWD),
            (nr::POLLIN as usize, libc::POLLIN as libc::c_int),
            (nr::POLLOUT as usize, libc::POLLOUT as libc::c_int),
            (nr::O_WRONLY, libc::O_WRONLY),
            (nr::O_CREAT, libc::O_CREAT),
            (nr::O_TRUNC, libc::O_TRUNC),
            (nr::O_APPEND, libc::O_APPEND),
            (nr::O_NONBLOCK, libc::O_NONBLOCK),
            (nr::O_CLOEXEC, libc::O_CLOEXEC),
            (nr::SOCK_NONBLOCK, libc::SOCK_NONBLOCK),
            (nr::SOCK_CLOEXEC, libc::SOCK_CLOEXEC),
            (nr::SFD_NONBLOCK, libc::SFD_NONBLOCK),
            (nr::SFD_CLOEXEC, libc::SFD_CLOEXEC),
            (nr::MAP_ANONYMOUS, libc::MAP_ANONYMOUS),
            (nr::PR_SET_NAME, libc::PR_SET_NAME),
        ];
        for (i, (ours, theirs)) in flags.iter().enumerate() {
            // AT_FDCWD is negative: compare the bits.
            assert_eq!(
                *ours,
                usize::from_ne_bytes(isize::try_from(*theirs).unwrap().to_ne_bytes()),
                "flag {i}"
            );
        }
        // libc's type for it differs between architectures.
        #[allow(clippy::unnecessary_cast)]
        let tiocswinsz = libc::TIOCSWINSZ as u64;
        assert_eq!(nr::TIOCSWINSZ as u64, tiocswinsz);
        let sigs = [
            (nr::SIGHUP, libc::SIGHUP),
            (nr::SIGINT, libc::SIGINT),
            (nr::SIGUSR1, libc::SIGUSR1),
            (nr::SIGPIPE, libc::SIGPIPE),
            (nr::SIGTERM, libc::SIGTERM),
            (nr::SIGCHLD, libc::SIGCHLD),
        ];
        for (ours, theirs) in sigs {
            assert_eq!(i32::try_from(ours).unwrap(), theirs);
        }
        assert_eq!(
            (nr::EINTR, nr::EAGAIN, nr::EEXIST),
            (
                libc::EINTR as isize,
                libc::EAGAIN as isize,
                libc::EEXIST as isize
            )
        );
    }
}

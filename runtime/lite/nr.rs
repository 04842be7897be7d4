//! System call numbers and kernel constants `berth-monitor-serve` uses, for
//! the two architectures it is built for. A unit test of berth-runtime checks
//! them against the libc crate's values.

#[cfg(target_arch = "x86_64")]
mod arch {
    pub const READ: usize = 0;
    pub const WRITE: usize = 1;
    pub const CLOSE: usize = 3;
    pub const MMAP: usize = 9;
    pub const MUNMAP: usize = 11;
    pub const RT_SIGPROCMASK: usize = 14;
    pub const IOCTL: usize = 16;
    pub const WAIT4: usize = 61;
    pub const FCNTL: usize = 72;
    pub const FSYNC: usize = 74;
    pub const PRCTL: usize = 157;
    pub const CLOCK_GETTIME: usize = 228;
    pub const EXIT_GROUP: usize = 231;
    pub const OPENAT: usize = 257;
    pub const MKDIRAT: usize = 258;
    pub const UNLINKAT: usize = 263;
    pub const RENAMEAT: usize = 264;
    pub const PPOLL: usize = 271;
    pub const ACCEPT4: usize = 288;
    pub const SIGNALFD4: usize = 289;
}

#[cfg(target_arch = "aarch64")]
mod arch {
    pub const READ: usize = 63;
    pub const WRITE: usize = 64;
    pub const CLOSE: usize = 57;
    pub const MMAP: usize = 222;
    pub const MUNMAP: usize = 215;
    pub const RT_SIGPROCMASK: usize = 135;
    pub const IOCTL: usize = 29;
    pub const WAIT4: usize = 260;
    pub const FCNTL: usize = 25;
    pub const FSYNC: usize = 82;
    pub const PRCTL: usize = 167;
    pub const CLOCK_GETTIME: usize = 113;
    pub const EXIT_GROUP: usize = 94;
    pub const OPENAT: usize = 56;
    pub const MKDIRAT: usize = 34;
    pub const UNLINKAT: usize = 35;
    pub const RENAMEAT: usize = 38;
    pub const PPOLL: usize = 73;
    pub const ACCEPT4: usize = 242;
    pub const SIGNALFD4: usize = 74;
}

pub use arch::*;

// The same on both architectures.
pub const AT_FDCWD: isize = -100;
pub const O_RDONLY: usize = 0;
pub const O_WRONLY: usize = 0o1;
pub const O_CREAT: usize = 0o100;
pub const O_TRUNC: usize = 0o1000;
pub const O_APPEND: usize = 0o2000;
pub const O_NONBLOCK: usize = 0o4000;
pub const O_CLOEXEC: usize = 0o2000000;
pub const F_GETFL: usize = 3;
pub const F_SETFL: usize = 4;
pub const SOCK_NONBLOCK: usize = 0o4000;
pub const SOCK_CLOEXEC: usize = 0o2000000;
pub const SFD_NONBLOCK: usize = 0o4000;
pub const SFD_CLOEXEC: usize = 0o2000000;
pub const SIG_BLOCK: usize = 0;
pub const WNOHANG: usize = 1;
pub const POLLIN: i16 = 0x1;
pub const POLLOUT: i16 = 0x4;
pub const TIOCSWINSZ: usize = 0x5414;
pub const PR_SET_NAME: usize = 15;
pub const CLOCK_REALTIME: usize = 0;
pub const CLOCK_MONOTONIC: usize = 1;
pub const PROT_READ: usize = 1;
pub const PROT_WRITE: usize = 2;
pub const MAP_PRIVATE: usize = 0x02;
pub const MAP_ANONYMOUS: usize = 0x20;
pub const EINTR: isize = 4;
pub const EAGAIN: isize = 11;
pub const EEXIST: isize = 17;

pub const SIGHUP: u32 = 1;
pub const SIGINT: u32 = 2;
pub const SIGUSR1: u32 = 10;
pub const SIGPIPE: u32 = 13;
pub const SIGTERM: u32 = 15;
pub const SIGCHLD: u32 = 17;

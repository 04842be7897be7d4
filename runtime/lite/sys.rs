//! Raw Linux system calls, the program entry point and the memory functions
//! the compiler expects: everything `berth-monitor-serve` needs from below,
//! since it links no libc. This is the runtime's syscall layer for this binary
//! and its only `unsafe` code; the wrappers take Rust types and check lengths.

// The system call ABI is machine words: every argument goes in a 64-bit
// register and fds and pids come back in one. The casts between usize, isize
// and i32 below are that ABI; the kernel keeps fds below RLIMIT_NOFILE and
// pids below pid_max, both far inside i32.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

use crate::nr;
use core::arch::{asm, global_asm};

/// A failed call: the kernel's errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub isize);

pub type Result<T> = core::result::Result<T, Errno>;

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn raw(n: usize, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the kernel reads only the arguments of call `n`; every caller
    // below passes pointers to live buffers of the lengths it passes.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") n as isize => ret,
            in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
            in("r10") a[3], in("r8") a[4], in("r9") a[5],
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

#[cfg(target_arch = "aarch64")]
#[inline(always)]
fn raw(n: usize, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: as for x86_64 above.
    unsafe {
        asm!(
            "svc 0",
            in("x8") n,
            inlateout("x0") a[0] as isize => ret,
            in("x1") a[1], in("x2") a[2], in("x3") a[3], in("x4") a[4], in("x5") a[5],
            options(nostack),
        );
    }
    ret
}

fn call(n: usize, a: [usize; 6]) -> Result<usize> {
    let r = raw(n, a);
    if (-4095..0).contains(&r) {
        Err(Errno(-r))
    } else {
        Ok(r as usize)
    }
}

/// Repeats a call interrupted by a signal.
fn call_restart(n: usize, a: [usize; 6]) -> Result<usize> {
    loop {
        match call(n, a) {
            Err(Errno(nr::EINTR)) => continue,
            r => return r,
        }
    }
}

/// A NUL-terminated path (the caller appends the NUL).
pub struct CPath<'a>(&'a [u8]);

impl<'a> CPath<'a> {
    /// `bytes` must end in a NUL and hold no other.
    pub fn new(bytes: &'a [u8]) -> Option<Self> {
        match bytes.iter().position(|b| *b == 0) {
            Some(i) if i + 1 == bytes.len() => Some(CPath(bytes)),
            _ => None,
        }
    }
    fn ptr(&self) -> usize {
        self.0.as_ptr() as usize
    }
}

pub fn read(fd: i32, buf: &mut [u8]) -> Result<usize> {
    call_restart(
        nr::READ,
        [fd as usize, buf.as_mut_ptr() as usize, buf.len(), 0, 0, 0],
    )
}

pub fn write(fd: i32, buf: &[u8]) -> Result<usize> {
    call_restart(
        nr::WRITE,
        [fd as usize, buf.as_ptr() as usize, buf.len(), 0, 0, 0],
    )
}

pub fn close(fd: i32) {
    let _ = call(nr::CLOSE, [fd as usize, 0, 0, 0, 0, 0]);
}

pub fn openat(path: &CPath, flags: usize, mode: usize) -> Result<i32> {
    call_restart(
        nr::OPENAT,
        [nr::AT_FDCWD as usize, path.ptr(), flags, mode, 0, 0],
    )
    .map(|fd| fd as i32)
}

pub fn mkdir(path: &CPath, mode: usize) -> Result<()> {
    call(
        nr::MKDIRAT,
        [nr::AT_FDCWD as usize, path.ptr(), mode, 0, 0, 0],
    )
    .map(|_| ())
}

pub fn unlink(path: &CPath) -> Result<()> {
    call(
        nr::UNLINKAT,
        [nr::AT_FDCWD as usize, path.ptr(), 0, 0, 0, 0],
    )
    .map(|_| ())
}

pub fn rename(from: &CPath, to: &CPath) -> Result<()> {
    call(
        nr::RENAMEAT,
        [
            nr::AT_FDCWD as usize,
            from.ptr(),
            nr::AT_FDCWD as usize,
            to.ptr(),
            0,
            0,
        ],
    )
    .map(|_| ())
}

pub fn fsync(fd: i32) -> Result<()> {
    call_restart(nr::FSYNC, [fd as usize, 0, 0, 0, 0, 0]).map(|_| ())
}

pub fn set_nonblocking(fd: i32) -> Result<()> {
    let fl = call(nr::FCNTL, [fd as usize, nr::F_GETFL, 0, 0, 0, 0])?;
    call(
        nr::FCNTL,
        [fd as usize, nr::F_SETFL, fl | nr::O_NONBLOCK, 0, 0, 0],
    )
    .map(|_| ())
}

/// `struct pollfd`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PollFd {
    pub fd: i32,
    pub events: i16,
    pub revents: i16,
}

/// poll(2) with a timeout in milliseconds; EINTR is reported, not retried.
pub fn poll(fds: &mut [PollFd], timeout_ms: u64) -> Result<usize> {
    let ts = [
        (timeout_ms / 1000) as usize,
        ((timeout_ms % 1000) * 1_000_000) as usize,
    ];
    call(
        nr::PPOLL,
        [
            fds.as_mut_ptr() as usize,
            fds.len(),
            ts.as_ptr() as usize,
            0,
            8,
            0,
        ],
    )
}

pub fn accept(fd: i32) -> Result<i32> {
    call(
        nr::ACCEPT4,
        [
            fd as usize,
            0,
            0,
            nr::SOCK_NONBLOCK | nr::SOCK_CLOEXEC,
            0,
            0,
        ],
    )
    .map(|fd| fd as i32)
}

/// Blocks `signals` and returns a non-blocking signalfd for them.
pub fn signalfd(signals: &[u32]) -> Result<i32> {
    let mask: u64 = signals.iter().fold(0, |m, s| m | 1 << (s - 1));
    let p = &mask as *const u64 as usize;
    call(nr::RT_SIGPROCMASK, [nr::SIG_BLOCK, p, 0, 8, 0, 0])?;
    call(
        nr::SIGNALFD4,
        [usize::MAX, p, 8, nr::SFD_NONBLOCK | nr::SFD_CLOEXEC, 0, 0],
    )
    .map(|fd| fd as i32)
}

/// Reads one pending signal's number from a signalfd.
pub fn read_signal(fd: i32) -> Option<u32> {
    // struct signalfd_siginfo: 128 bytes, ssi_signo first.
    let mut info = [0u8; 128];
    match read(fd, &mut info) {
        Ok(128) => Some(u32::from_ne_bytes([info[0], info[1], info[2], info[3]])),
        _ => None,
    }
}

/// How a reaped child ended.
pub enum Wait {
    Exited(i32, i32),
    Signaled(i32, i32),
    Other,
    None,
}

/// waitpid(-1, WNOHANG).
pub fn reap_any() -> Wait {
    let mut status: i32 = 0;
    match call(
        nr::WAIT4,
        [
            usize::MAX,
            &mut status as *mut i32 as usize,
            nr::WNOHANG,
            0,
            0,
            0,
        ],
    ) {
        Ok(0) | Err(_) => Wait::None,
        Ok(pid) => {
            let pid = pid as i32;
            let low = status & 0x7f;
            if low == 0 {
                Wait::Exited(pid, (status >> 8) & 0xff)
            } else if low != 0x7f {
                Wait::Signaled(pid, low)
            } else {
                Wait::Other
            }
        }
    }
}

pub fn set_winsize(fd: i32, rows: u16, cols: u16) -> Result<()> {
    let ws: [u16; 4] = [rows, cols, 0, 0];
    call(
        nr::IOCTL,
        [fd as usize, nr::TIOCSWINSZ, ws.as_ptr() as usize, 0, 0, 0],
    )
    .map(|_| ())
}

/// Sets the thread's name (`/proc/<pid>/comm`), at most 15 bytes.
pub fn set_name(name: &[u8]) {
    let mut buf = [0u8; 16];
    let n = name.len().min(15);
    buf[..n].copy_from_slice(&name[..n]);
    let _ = call(
        nr::PRCTL,
        [nr::PR_SET_NAME, buf.as_ptr() as usize, 0, 0, 0, 0],
    );
}

/// Nanoseconds on `clock` (CLOCK_REALTIME: since the unix epoch).
pub fn clock_nanos(clock: usize) -> i64 {
    let mut ts = [0i64; 2];
    match call(
        nr::CLOCK_GETTIME,
        [clock, ts.as_mut_ptr() as usize, 0, 0, 0, 0],
    ) {
        Ok(_) => ts[0] * 1_000_000_000 + ts[1],
        Err(_) => 0,
    }
}

pub fn exit(code: i32) -> ! {
    loop {
        raw(nr::EXIT_GROUP, [code as usize, 0, 0, 0, 0, 0]);
    }
}

/// Anonymous private memory, page aligned.
pub fn map(len: usize) -> Option<*mut u8> {
    call(
        nr::MMAP,
        [
            0,
            len,
            nr::PROT_READ | nr::PROT_WRITE,
            nr::MAP_PRIVATE | nr::MAP_ANONYMOUS,
            usize::MAX,
            0,
        ],
    )
    .ok()
    .map(|p| p as *mut u8)
}

/// Gives back memory [`map`] returned.
///
/// # Safety
/// `ptr` and `len` must be one earlier mapping, no longer used.
pub unsafe fn unmap(ptr: *mut u8, len: usize) {
    let _ = call(nr::MUNMAP, [ptr as usize, len, 0, 0, 0, 0]);
}

/// The command line, as the kernel laid it out on the initial stack.
#[derive(Debug)]
pub struct Args {
    argc: usize,
    argv: *const *const u8,
}

impl Args {
    pub fn get(&self, i: usize) -> Option<&'static [u8]> {
        if i >= self.argc {
            return None;
        }
        // SAFETY: the kernel put argc valid pointers to NUL-terminated strings
        // at argv; they live, unchanged, as long as the process.
        unsafe {
            let p = *self.argv.add(i);
            let mut n = 0;
            while *p.add(n) != 0 {
                n += 1;
            }
            Some(core::slice::from_raw_parts(p, n))
        }
    }
    pub fn len(&self) -> usize {
        self.argc
    }
}

// The entry point: the kernel jumps here with the stack holding argc, then
// argv. Clear the frame pointer, align the stack and call `start` with it.
#[cfg(target_arch = "x86_64")]
global_asm!(
    ".globl _start",
    "_start:",
    "xor ebp, ebp",
    "mov rdi, rsp",
    "and rsp, -16",
    "call {start}",
    "ud2",
    start = sym start,
);

#[cfg(target_arch = "aarch64")]
global_asm!(
    ".globl _start",
    "_start:",
    "mov x29, #0",
    "mov x30, #0",
    "mov x0, sp",
    "bl {start}",
    "brk #0",
    start = sym start,
);

extern "C" fn start(sp: *const usize) -> ! {
    // SAFETY: `sp` is the initial stack: argc, then argv.
    let args = unsafe {
        Args {
            argc: *sp,
            argv: sp.add(1) as *const *const u8,
        }
    };
    exit(crate::main(args))
}

// The compiler lowers copies and fills to these symbols; libc would provide them.

/// # Safety
/// The C contract: `n` bytes valid at both, not overlapping.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller's contract; a forward copy is memcpy.
    unsafe { memmove(dst, src, n) }
}

/// # Safety
/// The C contract: `n` bytes valid at both.
#[no_mangle]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    let mut i = 0;
    if (dst as usize) <= (src as usize) {
        while i < n {
            // SAFETY: i < n, within both ranges.
            unsafe { *dst.add(i) = *src.add(i) };
            i += 1;
        }
    } else {
        while i < n {
            // SAFETY: as above, copying backwards for an overlap.
            unsafe { *dst.add(n - 1 - i) = *src.add(n - 1 - i) };
            i += 1;
        }
    }
    dst
}

/// # Safety
/// The C contract: `n` bytes valid at `dst`.
#[no_mangle]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    let mut i = 0;
    while i < n {
        // SAFETY: i < n.
        unsafe { *dst.add(i) = c as u8 };
        i += 1;
    }
    dst
}

/// # Safety
/// The C contract: `n` bytes valid at both.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        // SAFETY: i < n.
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return x as i32 - y as i32;
        }
        i += 1;
    }
    0
}

/// # Safety
/// As [`memcmp`].
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: the caller's contract.
    unsafe { memcmp(a, b, n) }
}

/// The precompiled core library names the unwinder's personality routine even
/// though this binary aborts on panic; it is never called.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}

/// Landing pads in the precompiled alloc library resume unwinding through
/// this; nothing unwinds here (a panic exits), so it is never reached.
#[no_mangle]
pub extern "C" fn _Unwind_Resume() -> ! {
    exit(134)
}

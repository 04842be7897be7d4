//! Safe wrappers for the process-level calls the monitor and helpers need.

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
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Which side of a fork or clone we are on.
#[derive(Debug)]
pub enum Fork {
    /// In the parent, with the child's pid.
    Parent(i32),
    /// In the child.
    Child,
}

/// fork(2). Only call from a single-threaded process (berth-monitor is one).
pub fn fork() -> io::Result<Fork> {
    // SAFETY: callers are single-threaded, so the child cannot inherit a lock held
    // by another thread.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Fork::Child),
        p => Ok(Fork::Parent(p)),
    }
}

/// clone(2) with namespace flags and fork-like semantics (child runs on a copy of
/// the stack). Only call from a single-threaded process.
pub fn clone_with_flags(flags: i32) -> io::Result<Fork> {
    let flags = (flags as libc::c_long) | libc::SIGCHLD as libc::c_long;
    // SAFETY: a NULL stack makes the kernel give the child a copy-on-write copy of
    // the caller's stack, exactly as fork does; the caller is single-threaded.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_int>(),
            std::ptr::null_mut::<libc::c_int>(),
            0 as libc::c_ulong,
        )
    };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Fork::Child),
        p => Ok(Fork::Parent(p as i32)),
    }
}

/// _exit(2): leaves a forked child without running the parent's exit handlers.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions.
    unsafe { libc::_exit(code) }
}

/// Makes `fd` the controlling terminal of the calling session leader.
pub fn set_controlling_tty(fd: RawFd) -> io::Result<()> {
    // SAFETY: TIOCSCTTY takes an int argument, no pointer.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCSCTTY, 0) };
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Opens a new pty pair through the `/dev/ptmx` of the caller's mount
/// namespace: (master, slave). The slave comes from TIOCGPTPEER, so no path
/// under /dev/pts has to be looked up.
pub fn open_pty_pair() -> io::Result<(std::fs::File, OwnedFd)> {
    open_pty_pair_at(std::path::Path::new("/dev/ptmx"))
}

/// [`open_pty_pair`] through the multiplexer at `ptmx` (a devpts instance's
/// `ptmx` node, or a link to one).
pub fn open_pty_pair_at(ptmx: &std::path::Path) -> io::Result<(std::fs::File, OwnedFd)> {
    use std::os::unix::fs::OpenOptionsExt;
    let master = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(ptmx)?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads an int that lives across the call.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } == -1 {
        return Err(io::Error::last_os_error());
    }
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER takes open flags by value and returns a new fd.
    let fd = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags) };
    if fd == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned to us and nothing else owns it.
    Ok((master, unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// A terminal's window size as (rows, cols).
pub fn get_winsize(fd: RawFd) -> io::Result<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes a winsize struct that lives across the call.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok((ws.ws_row, ws.ws_col))
    }
}

/// Sets a terminal's window size.
pub fn set_winsize(fd: RawFd, rows: u16, cols: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize struct that lives across the call.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Opens a pidfd for `pid`, which pins its identity against pid reuse.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes plain integers.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this new fd, nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Sends `sig` through a pidfd.
pub fn pidfd_send_signal(pidfd: &OwnedFd, sig: i32) -> io::Result<()> {
    // SAFETY: a valid pidfd, a signal number, and NULL siginfo as allowed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null_mut::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// kill(2) with a raw signal number (0 probes for existence).
pub fn kill(pid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: kill takes plain integers.
    let rc = unsafe { libc::kill(pid, sig) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Clears the close-on-exec flag so `fd` survives an exec.
pub fn clear_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl with F_SETFD and an int flag has no memory effects.
    let rc = unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Sets or clears O_NONBLOCK.
pub fn set_nonblocking(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: fcntl F_GETFL/F_SETFL with int flags has no memory effects.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl < 0 {
            return Err(io::Error::last_os_error());
        }
        let fl = if on {
            fl | libc::O_NONBLOCK
        } else {
            fl & !libc::O_NONBLOCK
        };
        if libc::fcntl(fd, libc::F_SETFL, fl) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// dup2(2).
pub fn dup2(old: RawFd, new: RawFd) -> io::Result<()> {
    // SAFETY: dup2 takes plain integers; closing `new` is what the caller wants.
    let rc = unsafe { libc::dup2(old, new) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Makes `fd` the process's stdin, stdout and stderr.
pub fn dup_to_stdio(fd: RawFd) -> io::Result<()> {
    for to in 0..3 {
        dup2(fd, to)?;
    }
    Ok(())
}

/// Points stdin, stdout and stderr at /dev/null, letting go of the caller's
/// (best effort: a process detaching from its caller has nowhere to report).
pub fn stdio_to_dev_null() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = dup_to_stdio(null.as_raw_fd());
    }
}

/// Closes every fd from `from` up, except those in `keep`.
pub fn close_fds_from(from: RawFd, keep: &[RawFd]) {
    let fds: Vec<RawFd> = match std::fs::read_dir("/proc/self/fd") {
        Ok(d) => d
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
        Err(_) => return,
    };
    for fd in fds {
        if fd >= from && !keep.contains(&fd) {
            // SAFETY: closing an fd this process owns; the directory fd used for the
            // listing is already closed, and nothing else uses these fds afterwards.
            unsafe { libc::close(fd) };
        }
    }
}

/// Blocks the given signals in this (single-threaded) process.
pub fn block_signals(sigs: &[i32]) -> io::Result<()> {
    // SAFETY: a zeroed sigset_t is a valid argument for sigemptyset, and all
    // pointers are to locals that live across the calls.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in sigs {
            libc::sigaddset(&mut set, *s);
        }
        if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Unblocks all signals and restores default dispositions (for a child about to exec).
pub fn reset_signals() {
    // SAFETY: as in block_signals; SIG_DFL is a valid disposition for every
    // catchable signal and errors for the others are ignored on purpose.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        for s in 1..32 {
            if s != libc::SIGKILL && s != libc::SIGSTOP {
                libc::signal(s, libc::SIG_DFL);
            }
        }
    }
}

/// Whether every write end of the pipe whose read end is `fd` is closed
/// (its writer is gone), without blocking.
pub fn hung_up(fd: &std::os::fd::OwnedFd) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(n) if n > 0 => fds[0]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLIN)),
        _ => false,
    }
}

/// The calling process's pid.
pub fn getpid() -> i32 {
    std::process::id() as i32
}

/// Sets IFF_UP on the loopback interface of the current network namespace.
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: plain socket(2) call; the fd is owned right after.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd and nothing else owns it.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in b"lo".iter().enumerate() {
        req.ifr_name[i] = *b as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we own, and
    // ifru_flags is the union member those requests use.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Execs the executable image `image` (held in memory, not in a file) with
/// `args` and an empty environment, from a memfd; where memfds may not be
/// executed (`vm.memfd_noexec=2`), from a copy written to `fallback` (0700,
/// replaced if present). Returns only on failure.
pub fn exec_image(
    name: &str,
    image: &[u8],
    args: &[Vec<u8>],
    fallback: &std::path::Path,
) -> io::Error {
    use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
    let to_c = |s: &[u8]| CString::new(s).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL));
    let (name, args) = match (
        to_c(name.as_bytes()),
        args.iter().map(|a| to_c(a)).collect(),
    ) {
        (Ok(n), Ok(a)) => (n, a),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let args: Vec<CString> = args;
    let env: [CString; 0] = [];
    // MFD_EXEC: with vm.memfd_noexec=1 a memfd is otherwise sealed against
    // exec. Kernels before 6.3 do not know the flag and say EINVAL.
    let exec = MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::from_bits_retain(libc::MFD_EXEC);
    let memfd = match memfd_create(&name, exec) {
        Err(nix::errno::Errno::EINVAL) => memfd_create(&name, MemFdCreateFlag::MFD_CLOEXEC),
        r => r,
    };
    if let Ok(fd) = memfd {
        let mut file = std::fs::File::from(fd);
        if std::io::Write::write_all(&mut file, image).is_ok() {
            // Only returns if exec of the memfd was refused.
            let _ = nix::unistd::fexecve(file.as_raw_fd(), &args, &env);
        }
    }
    let write = || -> io::Result<CString> {
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = fallback.with_extension("tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o700)
            .open(&tmp)?;
        std::io::Write::write_all(&mut f, image)?;
        drop(f);
        std::fs::rename(&tmp, fallback)?;
        to_c(std::os::unix::ffi::OsStrExt::as_bytes(fallback.as_os_str()))
    };
    match write() {
        Ok(path) => match nix::unistd::execve(&path, &args, &env) {
            Ok(never) => match never {},
            Err(e) => e.into(),
        },
        Err(e) => e,
    }
}

/// Sends `data` over a unix stream socket, with `fd` attached (SCM_RIGHTS).
pub fn send_with_fd(
    sock: &std::os::unix::net::UnixStream,
    data: &[u8],
    fd: Option<RawFd>,
) -> io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let fds = fd.map(|f| [f]);
    let cmsgs: Vec<ControlMessage<'_>> = fds
        .as_ref()
        .map(|f| ControlMessage::ScmRights(f))
        .into_iter()
        .collect();
    let iov = [io::IoSlice::new(data)];
    let n = sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsgs, MsgFlags::MSG_NOSIGNAL, None)
        .map_err(io::Error::from)?;
    // The fd went with the first byte; the rest of a short send follows.
    io::Write::write_all(&mut &*sock, &data[n..])
}

/// Receives up to and including the first `\n` from a unix stream socket
/// whose peer sends one line and then waits, with the fd attached to it, if
/// any. Returns what was read (empty at EOF).
pub fn recv_line_with_fd(
    sock: &std::os::unix::net::UnixStream,
) -> io::Result<(Vec<u8>, Option<OwnedFd>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut line = Vec::new();
    let mut fd = None;
    let mut buf = [0u8; 4096];
    while !line.contains(&b'\n') {
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        let mut iov = [io::IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(io::Error::from)?;
        let n = msg.bytes;
        for c in msg.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for f in fds {
                    // SAFETY: the kernel just installed `f` in our table for
                    // this message; nothing else knows of it.
                    let owned = unsafe { OwnedFd::from_raw_fd(f) };
                    fd.get_or_insert(owned);
                }
            }
        }
        if n == 0 {
            break;
        }
        line.extend_from_slice(&buf[..n]);
    }
    Ok((line, fd))
}

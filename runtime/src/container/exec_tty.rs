//! The terminal of `berth-monitor exec --tty`.
//!
//! berthd hands the helper a pty of the host's devpts as stdin/stdout. A
//! process given that pty sees a terminal that does not exist in its own
//! `/dev/pts` (`tty` says "not a tty", `ps` shows no TTY). So the helper opens
//! a pty of the container's devpts once it is in the container's mount
//! namespace, gives its slave to the process, and relays bytes and window
//! sizes between the two terminals. The host pty is put in raw mode so only
//! the container's line discipline echoes and edits.

use crate::error::{Error, Result};
use crate::sys::process;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// Host side: the terminal the helper was given as stdin (and stdout).
const HOST_IN: i32 = 0;
/// Input bytes held for the container while it does not read them.
const MAX_PENDING: usize = 64 * 1024;

/// A pty of the container's devpts.
#[derive(Debug)]
pub struct ContainerPty {
    pub master: File,
    pub slave: OwnedFd,
}

/// Opens a pty through `/dev/ptmx` as the calling process's mount namespace
/// sees it (call after joining the container's), with the host terminal's
/// current size. `None` when stdin is no terminal or the container has no
/// devpts: the process then keeps the terminal it was given.
pub fn open_container_pty() -> Option<ContainerPty> {
    if !nix::unistd::isatty(HOST_IN).unwrap_or(false) {
        return None;
    }
    let (master, slave) = process::open_pty_pair().ok()?;
    copy_size(master.as_raw_fd());
    Some(ContainerPty { master, slave })
}

/// For a process that keeps the host terminal (no container pty): berthd
/// hands it over raw, so turn on the usual line discipline (echo, editing,
/// signals, CR/LF mapping).
pub fn cook_host_terminal() {
    use nix::sys::termios::{InputFlags, LocalFlags, OutputFlags};
    let stdin = std::io::stdin();
    if let Ok(mut t) = tcgetattr(&stdin) {
        t.input_flags |= InputFlags::ICRNL | InputFlags::IXON;
        t.output_flags |= OutputFlags::OPOST | OutputFlags::ONLCR;
        t.local_flags |= LocalFlags::ICANON
            | LocalFlags::ECHO
            | LocalFlags::ECHOE
            | LocalFlags::ECHOK
            | LocalFlags::ISIG
            | LocalFlags::IEXTEN;
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &t);
    }
}

/// Blocks the signals [`relay`] reads; call before forking the process (which
/// resets its mask before exec).
pub fn block_relay_signals() -> Result<SigSet> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    set.add(Signal::SIGWINCH);
    set.thread_block()
        .map_err(|e| Error::sys("block SIGCHLD/SIGWINCH", e.into()))?;
    Ok(set)
}

/// Relays between the host terminal (fd 0/1) and `master` until process
/// `child` exits; returns its exit code (128+signal when killed).
pub fn relay(master: File, child: i32, sigs: SigSet) -> Result<i32> {
    let sfd = SignalFd::with_flags(&sigs, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| Error::sys("signalfd", e.into()))?;
    // Resizes of the host terminal reach us as SIGWINCH once it is our
    // controlling terminal; the helper is no group leader, so setsid works.
    // Without it the size stays the one at start.
    if nix::unistd::setsid().is_ok() {
        let _ = process::set_controlling_tty(HOST_IN);
    }
    let dup = |fd: BorrowedFd<'_>, what: &str| -> Result<File> {
        let owned = fd
            .try_clone_to_owned()
            .map_err(|e| Error::sys(format!("dup {what}"), e))?;
        Ok(File::from(owned))
    };
    let mut host_in = dup(std::io::stdin().as_fd(), "stdin")?;
    let mut host_out = dup(std::io::stdout().as_fd(), "stdout")?;
    copy_size(master.as_raw_fd());
    if let Ok(mut t) = tcgetattr(&host_in) {
        cfmakeraw(&mut t);
        let _ = tcsetattr(&host_in, SetArg::TCSANOW, &t);
    }
    process::set_nonblocking(master.as_raw_fd(), true)
        .map_err(|e| Error::sys("pty master: O_NONBLOCK", e))?;
    let mut master = Some(master);
    let mut host_open = true;
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if let Some(code) = reap(child)? {
            // What the process wrote before exiting is in the pty buffer.
            if let Some(m) = master.as_mut() {
                while let Ok(n) = m.read(&mut buf) {
                    if n == 0 || host_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
            return Ok(code);
        }
        let (mut m_ev, mut h_ev, mut s_ev) = (None, None, None);
        {
            let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
            if let Some(m) = &master {
                let mut f = PollFlags::POLLIN;
                if !pending.is_empty() {
                    f |= PollFlags::POLLOUT;
                }
                fds.push(PollFd::new(m.as_fd(), f));
            }
            let host_idx = fds.len();
            if host_open && pending.len() < MAX_PENDING {
                fds.push(PollFd::new(host_in.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(Error::sys("poll", e.into())),
            }
            s_ev = s_ev.or(fds[0].revents());
            if master.is_some() {
                m_ev = fds[1].revents();
            }
            if fds.len() > host_idx {
                h_ev = fds[host_idx].revents();
            }
        }
        if s_ev.is_some_and(|e| !e.is_empty()) {
            while let Ok(Some(si)) = sfd.read_signal() {
                if si.ssi_signo == Signal::SIGWINCH as u32 {
                    if let Some(m) = &master {
                        copy_size(m.as_raw_fd());
                    }
                }
            }
        }
        if let (Some(ev), Some(m)) = (m_ev, master.as_mut()) {
            if ev.contains(PollFlags::POLLOUT) && !pending.is_empty() {
                match m.write(&pending) {
                    Ok(n) => {
                        pending.drain(..n);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => pending.clear(),
                }
            }
            if ev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
                match m.read(&mut buf) {
                    Ok(n) if n > 0 => {
                        // The host side going away is handled through stdin.
                        let _ = host_out.write_all(&buf[..n]);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    // EIO/EOF: nobody holds the slave any more; the exit
                    // comes as SIGCHLD.
                    _ => master = None,
                }
            }
        }
        if let Some(ev) = h_ev {
            if ev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
                match host_in.read(&mut buf) {
                    Ok(n) if n > 0 => pending.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    // A ^D read while the host side was still canonical, not
                    // the end of the session (that is EIO or POLLHUP).
                    Ok(_) if !ev.contains(PollFlags::POLLHUP) => {}
                    _ => {
                        // berthd closed the session: hang up the container's
                        // terminal, which sends SIGHUP to the process's session.
                        host_open = false;
                        pending.clear();
                        master = None;
                    }
                }
            }
        }
    }
}

/// The exit code of `child` once it has exited.
fn reap(child: i32) -> Result<Option<i32>> {
    loop {
        match waitpid(
            nix::unistd::Pid::from_raw(child),
            Some(WaitPidFlag::WNOHANG),
        ) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(Some(code)),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(Some(128 + sig as i32)),
            Ok(_) => return Ok(None),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(Error::sys(format!("wait for exec'd pid {child}"), e.into())),
        }
    }
}

/// Gives `master` the host terminal's size.
fn copy_size(master: i32) {
    if let Ok((rows, cols)) = process::get_winsize(HOST_IN) {
        if rows > 0 && cols > 0 {
            let _ = process::set_winsize(master, rows, cols);
        }
    }
}

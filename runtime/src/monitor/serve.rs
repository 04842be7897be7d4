//! The monitor's event loop: one poll(2) over the container's output, the attach
//! socket and its clients, and a signalfd (SIGCHLD, SIGUSR1 = reopen the log).
//! Synchronous and allocation-light so the monitor stays small.

use super::attach;
use super::log::{CriLog, Stream};
use crate::cgroups::CgroupManager;
use crate::container::create::{Created, MonitorStdio};
use crate::container::state::{self, ExitInfo, ATTACH_SOCKET, EXIT_FILE};
use crate::error::{Error, Result};
use crate::sys::process;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// After the init exits, how long to keep draining output that other
/// processes (sharing a pid namespace) may still hold open.
const DRAIN: Duration = Duration::from_secs(2);

struct Client {
    sock: UnixStream,
    buf: Vec<u8>,
}

struct Output {
    file: File,
    stream: Stream,
    frame: u8,
}

/// Blocks the signals the loop handles; call before anything can send them.
pub fn block_signals() -> Result<SigSet> {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGUSR1,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        set.add(s);
    }
    set.thread_block()
        .map_err(|e| Error::sys("block signals", e.into()))?;
    Ok(set)
}

/// What the serve loop needs: less than [`Created`], so the re-exec'd monitor
/// can be given it on its command line without parsing state.json.
pub struct ServeInput {
    pub pid: i32,
    pub stdio: MonitorStdio,
    pub cgroup: Box<dyn CgroupManager>,
    pub oom_baseline: u64,
    pub attach: UnixListener,
}

impl From<Created> for ServeInput {
    fn from(c: Created) -> Self {
        ServeInput {
            pid: c.state.pid,
            stdio: c.stdio,
            cgroup: c.cgroup,
            oom_baseline: c.oom_baseline,
            attach: c.attach,
        }
    }
}

/// Runs until the container's init has exited and its exit is recorded.
pub fn serve(
    created: ServeInput,
    state_dir: &Path,
    log_path: Option<PathBuf>,
    sigs: SigSet,
) -> Result<ExitInfo> {
    let sfd = SignalFd::with_flags(&sigs, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| Error::sys("signalfd", e.into()))?;
    let mut log =
        CriLog::open(log_path.clone()).map_err(|e| Error::io(log_path.unwrap_or_default(), e))?;
    let sock_path = state_dir.join(ATTACH_SOCKET);
    let listener: UnixListener = created.attach;

    let pid = created.pid;
    let (mut outputs, mut stdin, pty) = match created.stdio {
        MonitorStdio::Pipes {
            stdin,
            stdout,
            stderr,
        } => (
            vec![
                Output {
                    file: stdout,
                    stream: Stream::Stdout,
                    frame: attach::STDOUT,
                },
                Output {
                    file: stderr,
                    stream: Stream::Stderr,
                    frame: attach::STDERR,
                },
            ],
            stdin,
            None,
        ),
        MonitorStdio::Pty { master } => {
            let input = master.try_clone().map_err(|e| Error::sys("dup pty", e))?;
            let raw = master.as_raw_fd();
            (
                vec![Output {
                    file: master,
                    stream: Stream::Stdout,
                    frame: attach::STDOUT,
                }],
                Some(input),
                Some(raw),
            )
        }
    };
    if let Some(s) = &stdin {
        let _ = process::set_nonblocking(s.as_raw_fd(), true);
    }
    let mut stdin_pending: Vec<u8> = Vec::new();
    let mut stdin_close = false;
    let mut clients: Vec<Client> = Vec::new();
    let mut status: Option<(i32, Option<i32>, i64)> = None;
    let mut drain_until: Option<Instant> = None;
    let mut buf = vec![0u8; 32 * 1024];

    // A SIGCHLD delivered before the signal was blocked would be lost.
    reap(pid, &mut status);

    loop {
        if status.is_some() {
            let until = *drain_until.get_or_insert_with(|| Instant::now() + DRAIN);
            if outputs.is_empty() || Instant::now() >= until {
                break;
            }
        }
        let timeout = if status.is_some() { 100u16 } else { 60_000 };
        let mut fds: Vec<PollFd> = Vec::with_capacity(4 + outputs.len() + clients.len());
        fds.push(PollFd::new(sfd.as_fd(), PollFlags::POLLIN));
        fds.push(PollFd::new(listener.as_fd(), PollFlags::POLLIN));
        for o in &outputs {
            fds.push(PollFd::new(o.file.as_fd(), PollFlags::POLLIN));
        }
        let stdin_idx = fds.len();
        let want_stdin = !stdin_pending.is_empty() && stdin.is_some();
        if let (true, Some(s)) = (want_stdin, &stdin) {
            fds.push(PollFd::new(s.as_fd(), PollFlags::POLLOUT));
        }
        let clients_idx = fds.len();
        for c in &clients {
            fds.push(PollFd::new(c.sock.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::from(timeout)) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::sys("poll", e.into())),
        }
        let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
        let sig_ready = ready(&fds[0]);
        let listen_ready = ready(&fds[1]);
        let out_ready: Vec<bool> = (0..outputs.len()).map(|i| ready(&fds[2 + i])).collect();
        let stdin_ready = want_stdin && ready(&fds[stdin_idx]);
        let client_ready: Vec<bool> = (0..clients.len())
            .map(|i| ready(&fds[clients_idx + i]))
            .collect();
        drop(fds);

        if sig_ready {
            while let Ok(Some(si)) = sfd.read_signal() {
                if si.ssi_signo == Signal::SIGUSR1 as u32 {
                    let _ = log.reopen();
                }
            }
            reap(pid, &mut status);
        }
        // Output first, so nothing written before the exit is lost.
        let mut closed = Vec::new();
        for (i, o) in outputs.iter_mut().enumerate() {
            if !out_ready[i] {
                continue;
            }
            match o.file.read(&mut buf) {
                Ok(0) => closed.push(i),
                Ok(n) => {
                    log.write(o.stream, &buf[..n]);
                    broadcast(&mut clients, o.frame, &buf[..n]);
                }
                Err(e)
                    if e.kind() == ErrorKind::Interrupted || e.kind() == ErrorKind::WouldBlock => {}
                // EIO: the pty's last slave fd is gone.
                Err(_) => closed.push(i),
            }
        }
        for i in closed.into_iter().rev() {
            log.eof(outputs[i].stream);
            outputs.remove(i);
        }
        if listen_ready {
            while let Ok((sock, _)) = listener.accept() {
                if sock.set_nonblocking(true).is_ok() {
                    clients.push(Client {
                        sock,
                        buf: Vec::new(),
                    });
                }
            }
        }
        let mut gone = Vec::new();
        for (i, c) in clients.iter_mut().enumerate() {
            if !client_ready.get(i).copied().unwrap_or(false) {
                continue;
            }
            match c.sock.read(&mut buf) {
                Ok(0) => gone.push(i),
                Ok(n) => {
                    c.buf.extend_from_slice(&buf[..n]);
                    match attach::decode(&mut c.buf) {
                        Err(_) => gone.push(i),
                        Ok(frames) => {
                            for (kind, payload) in frames {
                                match kind {
                                    attach::STDIN => stdin_pending.extend_from_slice(&payload),
                                    attach::STDIN_CLOSE => {
                                        if pty.is_some() {
                                            stdin_pending.push(0x04);
                                        } else {
                                            stdin_close = true;
                                        }
                                    }
                                    attach::RESIZE if payload.len() == 4 => {
                                        if let Some(m) = pty {
                                            let rows = u16::from_be_bytes([payload[0], payload[1]]);
                                            let cols = u16::from_be_bytes([payload[2], payload[3]]);
                                            let _ = process::set_winsize(m, rows, cols);
                                        }
                                    }
                                    attach::REOPEN_LOG => {
                                        let _ = log.reopen();
                                    }
                                    _ => {}
                                }
                            }
                        }
                    }
                }
                Err(e)
                    if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
                Err(_) => gone.push(i),
            }
        }
        for i in gone.into_iter().rev() {
            clients.remove(i);
        }
        if stdin_ready || (!stdin_pending.is_empty() && stdin.is_some()) {
            if let Some(s) = stdin.as_mut() {
                match s.write(&stdin_pending) {
                    Ok(n) => {
                        stdin_pending.drain(..n);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => {
                        stdin_pending.clear();
                        stdin = None;
                    }
                }
            }
        } else if stdin.is_none() {
            stdin_pending.clear();
        }
        if stdin_close && stdin_pending.is_empty() {
            stdin = None;
            stdin_close = false;
        }
    }
    for o in &outputs {
        log.eof(o.stream);
    }
    let (code, signal, finished_at) = status.unwrap_or((255, None, crate::timefmt::now_nanos()));
    let oom = created.cgroup.oom_kills().unwrap_or(0) > created.oom_baseline;
    let exit = ExitInfo {
        code,
        signal,
        finished_at,
        oom_killed: oom,
    };
    // Formatted by hand: keeps deserialisation code out of the serve loop's
    // resident pages. Same shape as ExitInfo's serde form.
    let json = format!(
        "{{\"code\":{},\"signal\":{},\"finished_at\":{},\"oom_killed\":{}}}",
        exit.code,
        exit.signal.map_or("null".to_string(), |s| s.to_string()),
        exit.finished_at,
        exit.oom_killed
    );
    state::write_atomic(&state_dir.join(EXIT_FILE), json.as_bytes())?;
    broadcast(&mut clients, attach::EXIT, &code.to_be_bytes());
    let _ = std::fs::remove_file(&sock_path);
    Ok(exit)
}

fn broadcast(clients: &mut Vec<Client>, kind: u8, data: &[u8]) {
    if clients.is_empty() {
        return;
    }
    let frame = attach::encode(kind, data);
    clients.retain_mut(|c| c.sock.write_all(&frame).is_ok());
}

fn reap(pid: i32, status: &mut Option<(i32, Option<i32>, i64)>) {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(p, code)) if p.as_raw() == pid => {
                *status = Some((code, None, crate::timefmt::now_nanos()));
            }
            Ok(WaitStatus::Signaled(p, sig, _)) if p.as_raw() == pid => {
                *status = Some((
                    128 + sig as i32,
                    Some(sig as i32),
                    crate::timefmt::now_nanos(),
                ));
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

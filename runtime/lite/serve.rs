//! The monitor's event loop: one poll over the container's output, the attach
//! socket and its clients, and a signalfd (SIGCHLD; SIGUSR1 reopens the log).
//! When the init has exited and its output is drained (at most [`DRAIN_NS`]
//! after the exit, for processes that share its pid namespace and still hold
//! the pipes), the exit is written to `exit.json` and the monitor ends.

use crate::attach;
use crate::cri_log::{Lines, Sink, Stream};
use crate::nr;
use crate::sys::{self, CPath, PollFd, Wait};
use crate::{Config, Stdio};
use alloc::vec::Vec;

const DRAIN_NS: i64 = 2_000_000_000;

/// The CRI log file, reopened at the same path after kubelet rotated it.
struct LogFile {
    path: Option<Vec<u8>>,
    fd: i32,
}

impl LogFile {
    fn open(path: Option<Vec<u8>>) -> Self {
        let mut l = LogFile {
            path: path.map(nul_terminated),
            fd: -1,
        };
        l.reopen();
        l
    }

    fn reopen(&mut self) {
        let Some(p) = &self.path else { return };
        make_parent_dirs(p);
        let Some(c) = CPath::new(p) else { return };
        let flags = nr::O_WRONLY | nr::O_CREAT | nr::O_APPEND | nr::O_CLOEXEC;
        if let Ok(fd) = sys::openat(&c, flags, 0o666) {
            if self.fd >= 0 {
                sys::close(self.fd);
            }
            self.fd = fd;
        }
    }
}

impl Sink for LogFile {
    fn append(&mut self, record: &[u8]) {
        // A full disk must not end the container's monitor: drop the record.
        if self.fd >= 0 {
            write_all(self.fd, record);
        }
    }
    fn now_nanos(&mut self) -> i64 {
        sys::clock_nanos(nr::CLOCK_REALTIME)
    }
}

struct Output {
    fd: i32,
    stream: Stream,
    frame: u8,
}

struct Client {
    fd: i32,
    buf: Vec<u8>,
    /// The client shut down its sending side: it has nothing more to say but
    /// still reads output and the exit (an attach without stdin, or after its
    /// stdin ended). Polled with no events, so only a hang-up wakes us.
    input_done: bool,
}

/// How the init ended: code (128 + signal when killed), signal, when.
type Status = (i32, Option<i32>, i64);

pub fn serve(cfg: Config) -> i32 {
    // SIGPIPE is blocked too (and never read): a write to an attach client
    // that went away must fail with EPIPE, whatever disposition was inherited.
    let Ok(sfd) = sys::signalfd(&[
        nr::SIGCHLD,
        nr::SIGUSR1,
        nr::SIGTERM,
        nr::SIGINT,
        nr::SIGHUP,
        nr::SIGPIPE,
    ]) else {
        return 1;
    };
    let mut log = LogFile::open(cfg.log_path);
    let mut lines = Lines::new();
    let (mut outputs, mut stdin, pty) = match cfg.stdio {
        Stdio::Pipes {
            stdin,
            stdout,
            stderr,
        } => (
            alloc::vec![
                Output {
                    fd: stdout,
                    stream: Stream::Stdout,
                    frame: attach::STDOUT,
                },
                Output {
                    fd: stderr,
                    stream: Stream::Stderr,
                    frame: attach::STDERR,
                },
            ],
            stdin,
            None,
        ),
        // The pty master is both the output and the input.
        Stdio::Pty(m) => (
            alloc::vec![Output {
                fd: m,
                stream: Stream::Stdout,
                frame: attach::STDOUT,
            }],
            Some(m),
            Some(m),
        ),
    };
    if let Some(s) = stdin {
        let _ = sys::set_nonblocking(s);
    }
    let mut stdin_pending: Vec<u8> = Vec::new();
    let mut stdin_close = false;
    let mut clients: Vec<Client> = Vec::new();
    let mut status: Option<Status> = None;
    let mut drain_until: Option<i64> = None;
    let mut buf = alloc::vec![0u8; 32 * 1024];
    let mut fds: Vec<PollFd> = Vec::new();

    // A SIGCHLD delivered before the signal was blocked would be lost.
    reap(cfg.pid, &mut status);

    loop {
        if status.is_some() {
            let now = sys::clock_nanos(nr::CLOCK_MONOTONIC);
            let until = *drain_until.get_or_insert(now + DRAIN_NS);
            if outputs.is_empty() || now >= until {
                break;
            }
        }
        let timeout = if status.is_some() { 100 } else { 60_000 };
        let want_stdin = !stdin_pending.is_empty() && stdin.is_some();
        fds.clear();
        let pollfd = |fd, events| PollFd {
            fd,
            events,
            revents: 0,
        };
        fds.push(pollfd(sfd, nr::POLLIN));
        fds.push(pollfd(cfg.attach, nr::POLLIN));
        for o in &outputs {
            fds.push(pollfd(o.fd, nr::POLLIN));
        }
        let stdin_idx = fds.len();
        if let (true, Some(s)) = (want_stdin, stdin) {
            fds.push(pollfd(s, nr::POLLOUT));
        }
        let clients_idx = fds.len();
        for c in &clients {
            fds.push(pollfd(c.fd, if c.input_done { 0 } else { nr::POLLIN }));
        }
        match sys::poll(&mut fds, timeout) {
            Ok(_) | Err(sys::Errno(nr::EINTR)) => {}
            Err(_) => return 1,
        }
        // Slots as laid out above: outputs and clients are only removed after
        // their loops (a client `broadcast` drops keeps its slot, with fd -1,
        // until then), and clients accepted below sit past the end of `fds`.
        let ready = |i: usize| fds.get(i).is_some_and(|f| f.revents != 0);
        let stdin_ready = want_stdin && ready(stdin_idx);

        if ready(0) {
            while let Some(sig) = sys::read_signal(sfd) {
                if sig == nr::SIGUSR1 {
                    log.reopen();
                }
            }
            reap(cfg.pid, &mut status);
        }
        // Output first, so nothing written before the exit is lost.
        let mut closed = Vec::new();
        for (i, o) in outputs.iter().enumerate() {
            if !ready(2 + i) {
                continue;
            }
            match sys::read(o.fd, &mut buf) {
                Ok(n) if n > 0 => {
                    lines.write(&mut log, o.stream, &buf[..n]);
                    broadcast(&mut clients, o.frame, &buf[..n]);
                }
                Err(sys::Errno(nr::EAGAIN)) => {}
                // EOF, or EIO: the pty's last slave fd is gone.
                _ => closed.push(i),
            }
        }
        for i in closed.into_iter().rev() {
            lines.eof(&mut log, outputs[i].stream);
            outputs.remove(i);
        }
        if ready(1) {
            while let Ok(fd) = sys::accept(cfg.attach) {
                clients.push(Client {
                    fd,
                    buf: Vec::new(),
                    input_done: false,
                });
            }
        }
        let mut gone = Vec::new();
        for (i, c) in clients.iter_mut().enumerate() {
            if c.fd < 0 || !ready(clients_idx + i) {
                continue;
            }
            if c.input_done {
                // POLLHUP or POLLERR: the client is gone both ways.
                gone.push(i);
                continue;
            }
            match sys::read(c.fd, &mut buf) {
                // End of the client's input, not of the client: it still
                // waits for output and the EXIT frame.
                Ok(0) => c.input_done = true,
                Ok(n) => {
                    c.buf.extend_from_slice(&buf[..n]);
                    let Ok(frames) = attach::decode(&mut c.buf) else {
                        gone.push(i);
                        continue;
                    };
                    for (kind, payload) in frames {
                        match kind {
                            attach::STDIN => stdin_pending.extend_from_slice(&payload),
                            attach::STDIN_CLOSE if pty.is_some() => stdin_pending.push(0x04),
                            attach::STDIN_CLOSE => stdin_close = true,
                            attach::RESIZE if payload.len() == 4 => {
                                if let Some(m) = pty {
                                    let rows = u16::from_be_bytes([payload[0], payload[1]]);
                                    let cols = u16::from_be_bytes([payload[2], payload[3]]);
                                    let _ = sys::set_winsize(m, rows, cols);
                                }
                            }
                            attach::REOPEN_LOG => log.reopen(),
                            _ => {}
                        }
                    }
                }
                Err(sys::Errno(nr::EAGAIN)) => {}
                Err(_) => gone.push(i),
            }
        }
        for i in gone.into_iter().rev() {
            sys::close(clients.remove(i).fd);
        }
        // Dropped by `broadcast` above; removed only now so that the client
        // slots of `fds` matched `clients` while it was read.
        clients.retain(|c| c.fd >= 0);
        if stdin_ready || (!stdin_pending.is_empty() && stdin.is_some()) {
            if let Some(s) = stdin {
                match sys::write(s, &stdin_pending) {
                    Ok(n) => {
                        stdin_pending.drain(..n);
                    }
                    Err(sys::Errno(nr::EAGAIN)) => {}
                    Err(_) => {
                        stdin_pending.clear();
                        close_stdin(&mut stdin, pty);
                    }
                }
            }
        } else if stdin.is_none() {
            stdin_pending.clear();
        }
        if stdin_close && stdin_pending.is_empty() {
            close_stdin(&mut stdin, pty);
            stdin_close = false;
        }
    }
    for o in &outputs {
        lines.eof(&mut log, o.stream);
    }
    let (code, signal, finished_at) =
        status.unwrap_or((255, None, sys::clock_nanos(nr::CLOCK_REALTIME)));
    let oom_killed = cfg
        .oom_file
        .as_ref()
        .and_then(|f| oom_kills(f))
        .is_some_and(|n| n > cfg.oom_baseline);
    let mut json = Vec::with_capacity(96);
    json.extend_from_slice(b"{\"code\":");
    push_int(&mut json, code as i64);
    json.extend_from_slice(b",\"signal\":");
    match signal {
        Some(s) => push_int(&mut json, s as i64),
        None => json.extend_from_slice(b"null"),
    }
    json.extend_from_slice(b",\"finished_at\":");
    push_int(&mut json, finished_at);
    json.extend_from_slice(b",\"oom_killed\":");
    json.extend_from_slice(if oom_killed { b"true" } else { b"false" });
    json.extend_from_slice(b"}");
    if write_atomic(&cfg.state_dir, b"exit.json", &json).is_err() {
        return 1;
    }
    broadcast(&mut clients, attach::EXIT, &code.to_be_bytes());
    if let Some(p) = CPath::new(&join(&cfg.state_dir, b"attach.sock")) {
        let _ = sys::unlink(&p);
    }
    0
}

/// Pid 1 of a pod's pid namespace: reaps whatever is reparented to it until
/// it is killed (signals from inside the namespace do not reach it).
pub fn pause() -> i32 {
    let Ok(sfd) = sys::signalfd(&[nr::SIGCHLD]) else {
        return 1;
    };
    loop {
        while sys::read_signal(sfd).is_some() {}
        while !matches!(sys::reap_any(), Wait::None) {}
        let mut fds = [PollFd {
            fd: sfd,
            events: nr::POLLIN,
            revents: 0,
        }];
        let _ = sys::poll(&mut fds, 3_600_000);
    }
}

/// Closes the container's stdin (a pty master stays open: it is the output).
fn close_stdin(stdin: &mut Option<i32>, pty: Option<i32>) {
    if let (Some(fd), None) = (stdin.take(), pty) {
        sys::close(fd);
    }
}

fn broadcast(clients: &mut [Client], kind: u8, data: &[u8]) {
    if clients.is_empty() {
        return;
    }
    let frame = attach::encode(kind, data);
    // A client that cannot keep up is dropped rather than stall the container.
    // Only closed and marked here: the loop removes it once it is done with
    // the poll slots, which follow the order of `clients`.
    for c in clients.iter_mut().filter(|c| c.fd >= 0) {
        if !write_all(c.fd, &frame) {
            sys::close(c.fd);
            c.fd = -1;
        }
    }
}

fn reap(pid: i32, status: &mut Option<Status>) {
    loop {
        match sys::reap_any() {
            Wait::Exited(p, code) if p == pid => {
                *status = Some((code, None, sys::clock_nanos(nr::CLOCK_REALTIME)));
            }
            Wait::Signaled(p, sig) if p == pid => {
                *status = Some((128 + sig, Some(sig), sys::clock_nanos(nr::CLOCK_REALTIME)));
            }
            Wait::None => return,
            _ => {}
        }
    }
}

/// The `oom_kill` count in a memory.oom_control (v1) or memory.events (v2) file.
fn oom_kills(file: &[u8]) -> Option<u64> {
    let c = nul_terminated(file.to_vec());
    let fd = sys::openat(&CPath::new(&c)?, nr::O_RDONLY | nr::O_CLOEXEC, 0).ok()?;
    let mut buf = [0u8; 512];
    let n = sys::read(fd, &mut buf).unwrap_or(0);
    sys::close(fd);
    buf[..n].split(|b| *b == b'\n').find_map(|line| {
        let v = line.strip_prefix(b"oom_kill ")?;
        crate::parse_u64(v)
    })
}

/// Writes `dir/name` by a synced temporary file renamed over it.
fn write_atomic(dir: &[u8], name: &[u8], data: &[u8]) -> Result<(), sys::Errno> {
    let bad = sys::Errno(22);
    let mut tmp_name = Vec::with_capacity(name.len() + 5);
    tmp_name.push(b'.');
    tmp_name.extend_from_slice(name);
    tmp_name.extend_from_slice(b".tmp");
    let tmp = join(dir, &tmp_name);
    let dst = join(dir, name);
    let (tmp_c, dst_c) = (CPath::new(&tmp).ok_or(bad)?, CPath::new(&dst).ok_or(bad)?);
    let flags = nr::O_WRONLY | nr::O_CREAT | nr::O_TRUNC | nr::O_CLOEXEC;
    let fd = sys::openat(&tmp_c, flags, 0o666)?;
    let ok = write_all(fd, data);
    let synced = sys::fsync(fd);
    sys::close(fd);
    if !ok {
        return Err(sys::Errno(5));
    }
    synced?;
    sys::rename(&tmp_c, &dst_c)?;
    let d = nul_terminated(dir.to_vec());
    if let Some(dc) = CPath::new(&d) {
        if let Ok(dfd) = sys::openat(&dc, nr::O_RDONLY | nr::O_CLOEXEC, 0) {
            let _ = sys::fsync(dfd);
            sys::close(dfd);
        }
    }
    Ok(())
}

/// Writes everything; false on any error, including a full non-blocking socket.
fn write_all(fd: i32, mut data: &[u8]) -> bool {
    while !data.is_empty() {
        match sys::write(fd, data) {
            Ok(0) | Err(_) => return false,
            Ok(n) => data = &data[n..],
        }
    }
    true
}

/// Creates the directories above `path` (NUL-terminated), like `mkdir -p`.
fn make_parent_dirs(path: &[u8]) {
    let end = path.len().saturating_sub(1);
    for (i, b) in path[..end].iter().enumerate() {
        if *b == b'/' && i > 0 {
            let mut dir = path[..i].to_vec();
            dir.push(0);
            if let Some(c) = CPath::new(&dir) {
                match sys::mkdir(&c, 0o755) {
                    Ok(()) | Err(sys::Errno(nr::EEXIST)) => {}
                    Err(_) => return,
                }
            }
        }
    }
}

/// `dir/name` with a terminating NUL.
fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(dir.len() + name.len() + 2);
    p.extend_from_slice(dir);
    p.push(b'/');
    p.extend_from_slice(name);
    p.push(0);
    p
}

fn nul_terminated(mut v: Vec<u8>) -> Vec<u8> {
    v.push(0);
    v
}

fn push_int(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    let mut digits = [0u8; 20];
    let mut n = v.unsigned_abs();
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

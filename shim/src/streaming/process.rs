//! [`ProcessIo`] for a locally spawned helper process, the shape the real
//! runtime glue needs for `berth-monitor exec`: either piped stdio, or a pty
//! whose slave becomes the helper's stdio while berthd keeps the master
//! (resizes are applied to the master with `TIOCSWINSZ`).
//!
//! The helper (not berthd) must make the terminal its controlling terminal
//! (`setsid` + `TIOCSCTTY` on stdin) before running the user's command, so
//! that ^C typed by the client becomes a SIGINT; berthd never runs code
//! between fork and exec.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

use std::io;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::{ProcessIo, TermSize};
use crate::error::{Error, Result};

fn wait_error(e: std::io::Error) -> Error {
    Error::Runtime(format!("wait for exec helper: {e}"))
}

async fn exit_code(mut child: Child) -> Result<i32> {
    let status = child.wait().await.map_err(wait_error)?;
    // Killed by a signal: report it the way shells do.
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

/// Spawns `cmd` with piped stdio (stdin only if `stdin`); returns its I/O and
/// pid. Dropping the returned `exit` future kills the process.
pub fn spawn_piped(mut cmd: Command, stdin: bool) -> Result<(ProcessIo, Option<u32>)> {
    cmd.kill_on_drop(true)
        .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::Runtime(format!("spawn exec helper: {e}")))?;
    let pid = child.id();
    let io = ProcessIo {
        stdin: child.stdin.take().map(|s| Box::new(s) as _),
        stdout: child.stdout.take().map(|s| Box::new(s) as _),
        stderr: child.stderr.take().map(|s| Box::new(s) as _),
        resize: None,
        exit: Box::pin(exit_code(child)),
    };
    Ok((io, pid))
}

/// Spawns `cmd` on a new pty (the slave is its stdin, stdout and stderr).
/// Output comes from the master; stdin writes go to the master when `stdin`.
/// Returns the I/O and the pid; dropping `exit` kills the process.
pub fn spawn_with_pty(mut cmd: Command, stdin: bool) -> Result<(ProcessIo, Option<u32>)> {
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    let pty_err = |e: rustix::io::Errno| Error::Runtime(format!("allocate pty: {e}"));
    let master =
        openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).map_err(pty_err)?;
    grantpt(&master).map_err(pty_err)?;
    unlockpt(&master).map_err(pty_err)?;
    let name = ptsname(&master, Vec::new()).map_err(pty_err)?;
    let slave_path = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(name.as_bytes()));
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&slave_path)
        .map_err(Error::io("open pty slave", &slave_path))?;
    // Raw from the start: `berth-monitor exec --tty` gives the process a pty of
    // the container's own devpts, whose line discipline does the echo and the
    // editing; a cooked host side would echo keys twice, and turn an early
    // ^D into an end of input, before the helper could switch it to raw.
    let mut mode = rustix::termios::tcgetattr(&slave).map_err(pty_err)?;
    mode.make_raw();
    rustix::termios::tcsetattr(&slave, rustix::termios::OptionalActions::Now, &mode)
        .map_err(pty_err)?;
    let dup = |f: &std::fs::File| {
        f.try_clone()
            .map_err(|e| Error::Runtime(format!("duplicate pty fd: {e}")))
    };
    cmd.kill_on_drop(true)
        .stdin(Stdio::from(dup(&slave)?))
        .stdout(Stdio::from(dup(&slave)?))
        .stderr(Stdio::from(slave));
    let child = cmd
        .spawn()
        .map_err(|e| Error::Runtime(format!("spawn exec helper: {e}")))?;
    // The Command still holds the slave: drop it so reading the master ends
    // (EIO) once the process and its children are gone.
    drop(cmd);
    let pid = child.id();
    // Non-blocking and registered with the reactor, so dropping the session
    // closes the master at once even if an orphan still holds the slave (a
    // blocking read would pin the fd and a thread until the orphan exits).
    rustix::fs::fcntl_setfl(
        &master,
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NONBLOCK,
    )
    .map_err(pty_err)?;
    // `AsyncFd::new` is deprecated because a type's `as_raw_fd` could change
    // under the reactor; an `OwnedFd` returns the fd it owns until it is
    // dropped, so this is the sound case (and keeps the crate free of `unsafe`).
    #[allow(deprecated)]
    let registered = AsyncFd::new(master);
    let master = Arc::new(registered.map_err(|e| Error::Runtime(format!("register pty: {e}")))?);
    let reader = PtyMaster(master.clone());
    let writer = PtyMaster(master.clone());
    let (tx, mut rx) = mpsc::channel::<TermSize>(8);
    tokio::spawn(async move {
        while let Some(size) = rx.recv().await {
            let ws = rustix::termios::Winsize {
                ws_row: size.height,
                ws_col: size.width,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            if let Err(e) = rustix::termios::tcsetwinsize(master.get_ref(), ws) {
                tracing::debug!(error = %e, "pty resize failed");
            }
        }
    });
    let io = ProcessIo {
        stdin: stdin.then(|| Box::new(writer) as _),
        stdout: Some(Box::new(reader)),
        stderr: None,
        resize: Some(tx),
        exit: Box::pin(exit_code(child)),
    };
    Ok((io, pid))
}

/// One side (reader or writer) of a pty master shared through the reactor.
struct PtyMaster(Arc<AsyncFd<OwnedFd>>);

impl AsyncRead for PtyMaster {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.0.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|fd| {
                rustix::io::read(fd.get_ref(), &mut *unfilled).map_err(io::Error::from)
            }) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // EIO once the last slave user is gone: the caller treats it as EOF.
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for PtyMaster {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.0.poll_write_ready(cx))?;
            match guard.try_io(|fd| rustix::io::write(fd.get_ref(), data).map_err(io::Error::from))
            {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A terminal has no half-close; end-of-input is the client's ^D.
        Poll::Ready(Ok(()))
    }
}

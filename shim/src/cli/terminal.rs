//! The local terminal for `exec -t` and `attach -t`: raw mode for the
//! session's lifetime (restored by a guard on every way out, panics
//! included), the window size at the start and on every SIGWINCH, and a
//! stdin reader that does not hold the runtime hostage.

use std::io::{IsTerminal, Read};

use bytes::Bytes;
use rustix::termios::{self, OptionalActions, Termios};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::io::StreamReader;

use crate::error::{Error, Result};
use crate::streaming::{BoxReader, TermSize};

/// Puts the terminal on stdin in raw mode; restores the saved mode when dropped.
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Raw mode when stdin is a terminal, `None` otherwise.
    pub fn enable() -> Result<Option<RawMode>> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Ok(None);
        }
        let saved = termios::tcgetattr(&stdin)
            .map_err(|e| Error::Internal(format!("read terminal mode: {e}")))?;
        let mut raw = saved.clone();
        raw.make_raw();
        termios::tcsetattr(&stdin, OptionalActions::Now, &raw)
            .map_err(|e| Error::Internal(format!("set terminal raw mode: {e}")))?;
        Ok(Some(RawMode { saved }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // Drain pending output first, so the remote's last bytes are not
        // mangled by the mode switch.
        let _ = termios::tcsetattr(std::io::stdin(), OptionalActions::Drain, &self.saved);
    }
}

/// The window size of the terminal on stdout (or stdin), if there is one.
pub fn size() -> Option<TermSize> {
    let of = |ws: termios::Winsize| TermSize {
        width: ws.ws_col,
        height: ws.ws_row,
    };
    termios::tcgetwinsize(std::io::stdout())
        .or_else(|_| termios::tcgetwinsize(std::io::stdin()))
        .ok()
        .filter(|ws| ws.ws_col > 0 && ws.ws_row > 0)
        .map(of)
}

/// Sizes to send on the resize channel: the current one now, then one per
/// SIGWINCH. Empty (but open) when there is no terminal.
pub fn sizes() -> Result<mpsc::Receiver<TermSize>> {
    let (tx, rx) = mpsc::channel(8);
    let mut winch = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        .map_err(|e| Error::Internal(format!("watch SIGWINCH: {e}")))?;
    tokio::spawn(async move {
        let mut last = None;
        loop {
            let now = size();
            if let Some(size) = now.filter(|_| now != last) {
                last = now;
                if tx.send(size).await.is_err() {
                    return;
                }
            }
            if winch.recv().await.is_none() {
                return;
            }
        }
    });
    Ok(rx)
}

/// Stdin as an async reader fed by a plain thread: a blocking read on a
/// terminal never returns at session end, and a thread that is simply
/// abandoned at exit does not stall anything (tokio's own stdin would hold
/// the runtime's shutdown).
pub fn stdin() -> Result<BoxReader> {
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(4);
    std::thread::Builder::new()
        .name("berth-stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        if tx
                            .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                            .is_err()
                        {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
        })
        .map_err(|e| Error::Internal(format!("spawn the stdin reader: {e}")))?;
    Ok(Box::new(StreamReader::new(ReceiverStream::new(rx))))
}

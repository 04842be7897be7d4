//! [`ProcessIo`] for attach, over berth-monitor's attach socket
//! (`<state-dir>/attach.sock`, framing in `berth_runtime::monitor::attach`).
//!
//! Output frames are demultiplexed into stdout/stderr pipes; stdin and resizes
//! become STDIN, STDIN_CLOSE and RESIZE frames. `exit` resolves with the code
//! of the monitor's EXIT frame. Dropping the `ProcessIo` only disconnects: the
//! container keeps running, as attach semantics require.

use std::path::Path;

use berth_runtime::monitor::attach as frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{ProcessIo, TermSize};
use crate::error::{Error, Result};

const PIPE: usize = 64 * 1024;

/// Connects to the attach socket at `socket`.
pub async fn attach_via_monitor(socket: &Path, tty: bool, stdin: bool) -> Result<ProcessIo> {
    let sock = UnixStream::connect(socket)
        .await
        .map_err(Error::io("connect attach socket", socket))?;
    let (mut rd, mut wr) = sock.into_split();
    let cancel = CancellationToken::new();
    let (to_monitor, mut frames) = mpsc::channel::<Vec<u8>>(32);

    let c = cancel.clone();
    tokio::spawn(async move {
        loop {
            let f = tokio::select! {
                f = frames.recv() => f,
                _ = c.cancelled() => None,
            };
            let Some(f) = f else { break };
            if wr.write_all(&f).await.is_err() {
                break;
            }
        }
        // Input has ended (or the attach has no stdin), but dropping `wr`
        // would shut the socket's write half down, and a monitor from before
        // berthd was upgraded takes that for a disconnect and drops the
        // attach: keep it open until the session ends.
        c.cancelled().await;
        drop(wr);
    });

    let stdin_w = if stdin {
        let (w, r) = tokio::io::duplex(PIPE);
        tokio::spawn(pump_stdin(r, to_monitor.clone(), cancel.clone()));
        Some(Box::new(w) as _)
    } else {
        None
    };

    let resize = if tty {
        let (tx, mut rx) = mpsc::channel::<TermSize>(8);
        let (out, c) = (to_monitor.clone(), cancel.clone());
        tokio::spawn(async move {
            loop {
                let s = tokio::select! {
                    s = rx.recv() => s,
                    _ = c.cancelled() => None,
                };
                let Some(s) = s else { break };
                let mut p = s.height.to_be_bytes().to_vec();
                p.extend_from_slice(&s.width.to_be_bytes());
                if out.send(frame::encode(frame::RESIZE, &p)).await.is_err() {
                    break;
                }
            }
        });
        Some(tx)
    } else {
        None
    };

    let (mut out_w, out_r) = tokio::io::duplex(PIPE);
    let (mut err_w, err_r) = if tty {
        (None, None)
    } else {
        let (w, r) = tokio::io::duplex(PIPE);
        (Some(w), Some(r))
    };
    let (exit_tx, exit_rx) = oneshot::channel::<i32>();
    let c = cancel.clone();
    tokio::spawn(async move {
        let mut buf = Vec::with_capacity(PIPE);
        let mut chunk = vec![0u8; PIPE];
        loop {
            let n = tokio::select! {
                n = rd.read(&mut chunk) => n,
                _ = c.cancelled() => return,
            };
            match n {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            let Ok(frames) = frame::decode(&mut buf) else {
                tracing::warn!("attach socket sent an oversized frame, detaching");
                return;
            };
            for (kind, payload) in frames {
                let sink: Option<&mut DuplexStream> = match kind {
                    frame::STDOUT => Some(&mut out_w),
                    frame::STDERR => err_w.as_mut().or(Some(&mut out_w)),
                    frame::EXIT => {
                        let code = <[u8; 4]>::try_from(payload.as_slice())
                            .map(i32::from_be_bytes)
                            .unwrap_or(-1);
                        let _ = exit_tx.send(code);
                        return;
                    }
                    _ => None,
                };
                if let Some(w) = sink {
                    // A reader that went away just loses the output.
                    let _ = w.write_all(&payload).await;
                }
            }
        }
    });

    let guard = cancel.drop_guard();
    let exit = async move {
        let _detach_on_drop = guard;
        exit_rx
            .await
            .map_err(|_| Error::Runtime("attach socket closed before the container exited".into()))
    };
    Ok(ProcessIo {
        stdin: stdin_w,
        stdout: Some(Box::new(out_r)),
        stderr: err_r.map(|r| Box::new(r) as _),
        resize,
        exit: Box::pin(exit),
    })
}

async fn pump_stdin(mut r: DuplexStream, out: mpsc::Sender<Vec<u8>>, cancel: CancellationToken) {
    let mut chunk = vec![0u8; 32 * 1024];
    loop {
        let n = tokio::select! {
            n = r.read(&mut chunk) => n,
            _ = cancel.cancelled() => return,
        };
        let f = match n {
            Ok(0) | Err(_) => frame::encode(frame::STDIN_CLOSE, &[]),
            Ok(n) => frame::encode(frame::STDIN, &chunk[..n]),
        };
        let last = f[0] == frame::STDIN_CLOSE;
        if out.send(f).await.is_err() || last {
            return;
        }
    }
}

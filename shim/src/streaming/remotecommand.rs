//! Exec and attach, independent of the transport: once the SPDY or WebSocket
//! layer has produced the client's streams, [`run`] starts the process through
//! the [`StreamRuntime`], pumps stdin/stdout/stderr/resize, and reports the
//! outcome on the error stream. Dropping the future (the connection went
//! away) drops the [`ProcessIo`], which makes the runtime kill an exec.

use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::channel::{BoxChannelWriter, Inbound};
use super::status::Outcome;
use super::{BoxReader, BoxWriter, ProcessIo, StreamRuntime, TermSize};

/// What to run, from the cached CRI request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `Exec`: start `cmd` in the container.
    Exec {
        /// Container id.
        container_id: String,
        /// Argv.
        cmd: Vec<String>,
    },
    /// `Attach`: join the container's main process.
    Attach {
        /// Container id.
        container_id: String,
    },
}

/// The stdio options of a remote-command request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StdioOptions {
    /// Client sends stdin.
    pub stdin: bool,
    /// Client wants stdout.
    pub stdout: bool,
    /// Client wants stderr.
    pub stderr: bool,
    /// Run with a terminal (stderr merged into stdout).
    pub tty: bool,
}

/// A remote command to serve: the command plus its stdio options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteCommand {
    /// What to run.
    pub command: Command,
    /// Which streams.
    pub opts: StdioOptions,
}

/// The client's side of the streams, as the transport produced them.
pub(crate) struct Streams {
    pub stdin: Option<Inbound>,
    pub stdout: Option<BoxChannelWriter>,
    pub stderr: Option<BoxChannelWriter>,
    pub resize: Option<Inbound>,
    pub error: BoxChannelWriter,
    /// `v4.channel.k8s.io` and later: a JSON Status on the error stream.
    pub json_status: bool,
}

async fn start(runtime: &dyn StreamRuntime, rc: &RemoteCommand) -> Result<ProcessIo, String> {
    let o = rc.opts;
    match &rc.command {
        Command::Exec { container_id, cmd } => runtime
            .exec(container_id, cmd.clone(), o.tty, o.stdin)
            .await
            .map_err(|e| format!("error executing command in container: {e}")),
        Command::Attach { container_id } => runtime
            .attach(container_id, o.tty, o.stdin)
            .await
            .map_err(|e| format!("error attaching to container: {e}")),
    }
}

/// Serves one remote command to completion, or until `cancel` fires.
pub(crate) async fn run(
    runtime: Arc<dyn StreamRuntime>,
    rc: &RemoteCommand,
    mut streams: Streams,
    cancel: CancellationToken,
) {
    let started = tokio::select! {
        r = start(runtime.as_ref(), rc) => r,
        _ = cancel.cancelled() => return,
    };
    let process = match started {
        Ok(p) => p,
        Err(msg) => {
            tracing::warn!(error = %msg, "remote command failed to start");
            report(&mut streams, Outcome::Internal(msg)).await;
            return;
        }
    };
    let ProcessIo {
        stdin,
        stdout,
        stderr,
        resize,
        exit,
    } = process;
    let inputs = async {
        tokio::join!(
            pump_stdin(streams.stdin.take(), stdin),
            pump_resize(streams.resize.take(), resize)
        );
        // Input ending is not the end of the session: wait for the exit.
        std::future::pending::<()>().await
    };
    let mut out_w = streams.stdout.take();
    let mut err_w = streams.stderr.take();
    let work = async {
        let (code, _, _) = tokio::join!(
            exit,
            pump_output(stdout, out_w.as_mut()),
            pump_output(stderr, err_w.as_mut())
        );
        code
    };
    let code = tokio::select! {
        c = work => c,
        _ = inputs => unreachable!("inputs never finish"),
        _ = cancel.cancelled() => {
            tracing::debug!("client went away, releasing the process");
            return;
        }
    };
    let outcome = match (&rc.command, code) {
        (_, Err(e)) => Outcome::Internal(match rc.command {
            Command::Exec { .. } => format!("error executing command in container: {e}"),
            Command::Attach { .. } => format!("error attaching to container: {e}"),
        }),
        (Command::Exec { cmd, .. }, Ok(code)) if code != 0 => Outcome::ExitCode {
            cmd: cmd.clone(),
            code,
        },
        _ => Outcome::Success,
    };
    report(&mut streams, outcome).await;
}

async fn report(streams: &mut Streams, outcome: Outcome) {
    let payload = if streams.json_status {
        Some(outcome.to_json())
    } else {
        outcome.to_text()
    };
    if let Some(p) = payload {
        let _ = streams.error.write(Bytes::from(p)).await;
    }
    let _ = streams.error.close().await;
}

async fn pump_stdin(inbound: Option<Inbound>, mut stdin: Option<BoxWriter>) {
    let Some(mut inbound) = inbound else {
        return;
    };
    while let Some(chunk) = inbound.recv().await {
        if let Some(w) = stdin.as_mut() {
            if w.write_all(&chunk).await.is_err() || w.flush().await.is_err() {
                // The process closed its stdin; keep draining the client.
                stdin = None;
            }
        }
    }
    // The client closed stdin: pass the EOF on.
    if let Some(mut w) = stdin {
        let _ = w.shutdown().await;
    }
}

/// Parses the resize stream: a sequence of JSON objects (`{"Width":80,"Height":24}`),
/// as Go's json.Encoder writes them, split across frames arbitrarily.
async fn pump_resize(inbound: Option<Inbound>, resize: Option<mpsc::Sender<TermSize>>) {
    let Some(mut inbound) = inbound else {
        return;
    };
    let mut buf: Vec<u8> = Vec::new();
    while let Some(chunk) = inbound.recv().await {
        buf.extend_from_slice(&chunk);
        let (sizes, used) = decode_sizes(&buf);
        buf.drain(..used);
        for size in sizes {
            if let Some(tx) = &resize {
                let _ = tx.send(size).await;
            }
        }
        if buf.len() > 64 * 1024 {
            tracing::warn!("resize stream sent garbage, ignoring it");
            buf.clear();
        }
    }
}

/// Decodes every complete size in `buf`; returns them and the bytes consumed.
pub(crate) fn decode_sizes(buf: &[u8]) -> (Vec<TermSize>, usize) {
    let mut sizes = Vec::new();
    let mut it = serde_json::Deserializer::from_slice(buf).into_iter::<TermSize>();
    let mut used = 0;
    loop {
        match it.next() {
            Some(Ok(size)) => {
                sizes.push(size);
                used = it.byte_offset();
            }
            Some(Err(e)) if e.is_eof() => break,
            Some(Err(_)) => {
                // Not a size: drop everything seen so far and resynchronise.
                used = buf.len();
                break;
            }
            None => {
                used = buf.len();
                break;
            }
        }
    }
    (sizes, used)
}

async fn pump_output(reader: Option<BoxReader>, mut writer: Option<&mut BoxChannelWriter>) {
    if let Some(mut r) = reader {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            // A pty master reports EIO once the terminal's last user is gone: that is EOF.
            let n = match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if let Some(w) = writer.as_mut() {
                if w.write(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                    // The client's stream is gone; keep draining so the process
                    // never blocks on a full pipe.
                    writer = None;
                }
            }
        }
    }
    if let Some(w) = writer {
        let _ = w.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_stream_is_decoded_across_chunk_boundaries() {
        let all = br#"{"Width":80,"Height":24}
{"Width":100,"Height":50}
{"Wid"#;
        let (sizes, used) = decode_sizes(all);
        assert_eq!(
            sizes,
            vec![
                TermSize {
                    width: 80,
                    height: 24
                },
                TermSize {
                    width: 100,
                    height: 50
                }
            ]
        );
        assert_eq!(&all[used..], b"\n{\"Wid");
        let (sizes, used) = decode_sizes(b"not json");
        assert!(sizes.is_empty());
        assert_eq!(used, 8);
    }
}

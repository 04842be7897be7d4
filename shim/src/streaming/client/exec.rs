//! Exec and attach from the client side, over either transport: open the
//! channels the CRI request asked for, pump stdin and terminal sizes in,
//! stdout and stderr out, and read the Status off the error channel.
//!
//! The channels opened must match the request the URL was issued for (the
//! server waits for exactly those), so [`RemoteStdio`] names them: a present
//! `stdin` reader means stdin was requested, and so on.

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::spdy::Connection;
use super::ws::Mux;
use super::{exit_code_from_status, upgrade, Target, TlsTrust, Transport};
use crate::error::{Error, Result};
use crate::streaming::channel::BoxChannelWriter;
use crate::streaming::remotecommand_ws::{ERROR, RESIZE, STDERR, STDIN, STDOUT};
use crate::streaming::{BoxReader, BoxWriter, TermSize};

/// Remote-command protocols offered over SPDY, preferred first. Only v4
/// reports the exit code, so it is the one that matters.
const SPDY_PROTOCOLS: &[&str] = &["v4.channel.k8s.io"];
/// Remote-command subprotocols offered over WebSocket: v5 can close stdin.
const WS_PROTOCOLS: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io"];
/// Bytes read from stdin per message.
const STDIN_CHUNK: usize = 32 * 1024;

/// The local ends of an exec or attach. A `Some` stream is opened; it must
/// match the CRI request (`stdin`, `stdout`, `stderr` flags; no stderr with a tty).
#[derive(Default)]
pub struct RemoteStdio {
    /// Copied to the remote stdin; its EOF closes the remote stdin.
    pub stdin: Option<BoxReader>,
    /// Receives the remote stdout (the terminal's output with a tty).
    pub stdout: Option<BoxWriter>,
    /// Receives the remote stderr.
    pub stderr: Option<BoxWriter>,
    /// The request asked for a terminal: a resize channel is opened.
    pub tty: bool,
    /// Terminal sizes to send (the first one right away, then on each change).
    pub resize: Option<mpsc::Receiver<TermSize>>,
}

// By hand: it holds handles (tasks, streams, callbacks, stores) with no useful
// Debug of their own.
impl std::fmt::Debug for RemoteStdio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteStdio").finish_non_exhaustive()
    }
}

/// What [`run_and_collect`] gathered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collected {
    /// Everything the remote wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything the remote wrote to stderr.
    pub stderr: Vec<u8>,
    /// The remote exit code.
    pub exit_code: i32,
}

/// Which channels to open (the readers and writers themselves are not `Sync`,
/// so they stay out of the futures that open the connection).
#[derive(Clone, Copy)]
struct Wanted {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

/// The remote ends, whichever transport carries them.
struct Channels {
    stdin: Option<BoxChannelWriter>,
    resize: Option<BoxChannelWriter>,
    stdout: Option<mpsc::Receiver<Bytes>>,
    stderr: Option<mpsc::Receiver<Bytes>>,
    error: mpsc::Receiver<Bytes>,
}

enum Session {
    Spdy(Connection),
    Ws(Mux),
}

impl Session {
    async fn close(self) {
        match self {
            Session::Spdy(c) => c.close().await,
            Session::Ws(m) => m.close().await,
        }
    }
}

/// Runs the exec or attach behind `url` to completion, streaming between
/// `stdio` and the remote process; returns the remote exit code (0 for an
/// attach that ended). Errors are connection or protocol failures and
/// remote failures other than a non-zero exit (e.g. the command not found).
pub async fn remote_command(url: &str, transport: Transport, stdio: RemoteStdio) -> Result<i32> {
    remote_command_trusting(url, transport, &TlsTrust::System, stdio).await
}

/// [`remote_command`], trusting `trust` (instead of the system CA bundle)
/// when `url` is `https://`.
pub async fn remote_command_trusting(
    url: &str,
    transport: Transport,
    trust: &TlsTrust,
    stdio: RemoteStdio,
) -> Result<i32> {
    let target = Target::parse_trusting(url, trust)?;
    let want = Wanted {
        stdin: stdio.stdin.is_some(),
        stdout: stdio.stdout.is_some(),
        stderr: stdio.stderr.is_some(),
        tty: stdio.tty,
    };
    let (session, channels) = match transport {
        Transport::Spdy => open_spdy(&target, want).await?,
        Transport::WebSocket => open_ws(&target, want).await?,
    };
    let result = drive(channels, stdio).await;
    session.close().await;
    result
}

/// Runs the exec or attach behind `url` with `stdin` (if given) as input and
/// collects its output; `stdout`/`stderr` say which outputs the request asked for.
pub async fn run_and_collect(
    url: &str,
    transport: Transport,
    stdin: Option<Vec<u8>>,
    stdout: bool,
    stderr: bool,
    tty: bool,
) -> Result<Collected> {
    let (out_tx, out_rx) = tokio::io::duplex(64 * 1024);
    let (err_tx, err_rx) = tokio::io::duplex(64 * 1024);
    let stdio = RemoteStdio {
        stdin: stdin.map(|b| Box::new(std::io::Cursor::new(b)) as BoxReader),
        stdout: stdout.then(|| Box::new(out_tx) as BoxWriter),
        stderr: stderr.then(|| Box::new(err_tx) as BoxWriter),
        tty,
        resize: None,
    };
    let read_all = |mut r: tokio::io::DuplexStream| async move {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v).await;
        v
    };
    let (code, stdout, stderr) = tokio::join!(
        remote_command(url, transport, stdio),
        read_all(out_rx),
        read_all(err_rx)
    );
    Ok(Collected {
        stdout,
        stderr,
        exit_code: code?,
    })
}

fn header(name: &str, value: &str) -> (String, String) {
    (name.to_string(), value.to_string())
}

fn io_err(e: std::io::Error) -> Error {
    Error::Unavailable(format!("streaming: {e}"))
}

async fn open_spdy(target: &Target, stdio: Wanted) -> Result<(Session, Channels)> {
    let up = upgrade::spdy(target, SPDY_PROTOCOLS).await?;
    let conn = Connection::start(up.io, up.leftover);
    // kubectl's order: the error stream first, so a failure to start is
    // reported even if the other streams never get created.
    let stream = |kind: &str| vec![header("streamType", kind)];
    let error = conn.open(stream("error")).await.map_err(io_err)?;
    let mut ch = Channels {
        stdin: None,
        resize: None,
        stdout: None,
        stderr: None,
        error: error.inbound,
    };
    if stdio.stdin {
        let s = conn.open(stream("stdin")).await.map_err(io_err)?;
        ch.stdin = Some(Box::new(s.writer));
    }
    if stdio.stdout {
        ch.stdout = Some(conn.open(stream("stdout")).await.map_err(io_err)?.inbound);
    }
    if stdio.stderr {
        ch.stderr = Some(conn.open(stream("stderr")).await.map_err(io_err)?.inbound);
    }
    if stdio.tty {
        let s = conn.open(stream("resize")).await.map_err(io_err)?;
        ch.resize = Some(Box::new(s.writer));
    }
    Ok((Session::Spdy(conn), ch))
}

async fn open_ws(target: &Target, stdio: Wanted) -> Result<(Session, Channels)> {
    let mut mux = Mux::connect(target, WS_PROTOCOLS, 5).await?;
    let take = |mux: &mut Mux, ch: u8| mux.inbound[ch as usize].take();
    let ch = Channels {
        stdin: stdio
            .stdin
            .then(|| Box::new(mux.writer(STDIN)) as BoxChannelWriter),
        resize: stdio
            .tty
            .then(|| Box::new(mux.writer(RESIZE)) as BoxChannelWriter),
        stdout: take(&mut mux, STDOUT).filter(|_| stdio.stdout),
        stderr: take(&mut mux, STDERR).filter(|_| stdio.stderr),
        error: take(&mut mux, ERROR).expect("the error queue is taken once"),
    };
    Ok((Session::Ws(mux), ch))
}

async fn pump_stdin(mut from: BoxReader, mut to: BoxChannelWriter) {
    let mut buf = vec![0u8; STDIN_CHUNK];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = to.close().await;
}

async fn pump_resize(mut sizes: mpsc::Receiver<TermSize>, mut to: BoxChannelWriter) {
    while let Some(size) = sizes.recv().await {
        // One JSON object per message, newline-terminated as Go's json.Encoder writes it.
        let mut json = serde_json::to_vec(&size).expect("a size serialises");
        json.push(b'\n');
        if to.write(Bytes::from(json)).await.is_err() {
            return;
        }
    }
}

async fn pump_output(from: Option<mpsc::Receiver<Bytes>>, to: Option<BoxWriter>) {
    let (Some(mut from), Some(mut to)) = (from, to) else {
        return;
    };
    let mut sink_ok = true;
    while let Some(chunk) = from.recv().await {
        // Keep draining after the local sink fails so the session can end.
        if sink_ok && (to.write_all(&chunk).await.is_err() || to.flush().await.is_err()) {
            sink_ok = false;
        }
    }
    let _ = to.shutdown().await;
}

async fn drive(ch: Channels, stdio: RemoteStdio) -> Result<i32> {
    let RemoteStdio {
        stdin,
        stdout,
        stderr,
        resize,
        ..
    } = stdio;
    let Channels {
        stdin: stdin_w,
        resize: resize_w,
        stdout: stdout_r,
        stderr: stderr_r,
        mut error,
    } = ch;
    let inputs = async {
        let stdin_job = async {
            if let (Some(r), Some(w)) = (stdin, stdin_w) {
                pump_stdin(r, w).await;
            }
        };
        let resize_job = async {
            if let (Some(r), Some(w)) = (resize, resize_w) {
                pump_resize(r, w).await;
            }
        };
        tokio::join!(stdin_job, resize_job);
        // Input ending is not the end of the session.
        std::future::pending::<()>().await
    };
    let outputs = async {
        let collect_error = async {
            let mut status = Vec::new();
            while let Some(chunk) = error.recv().await {
                status.extend_from_slice(&chunk);
            }
            status
        };
        let (status, _, _) = tokio::join!(
            collect_error,
            pump_output(stdout_r, stdout),
            pump_output(stderr_r, stderr)
        );
        status
    };
    let status = tokio::select! {
        s = outputs => s,
        _ = inputs => unreachable!("inputs never finish"),
    };
    // Every protocol offered (v4, v5) reports a Status, success included:
    // none means the connection was cut (idle timeout, server gone).
    if status.is_empty() {
        return Err(Error::Unavailable(
            "streaming: the connection ended before the remote command's status arrived".into(),
        ));
    }
    exit_code_from_status(&status)
}

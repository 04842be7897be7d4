//! `berth exec`: without `-s`, through the streaming server like crictl
//! (Exec RPC, then the SPDY or WebSocket client), with `-i` for stdin and
//! `-t` for a terminal (raw mode, window size and SIGWINCH); with `-s`,
//! ExecSync. Either way the command's exit code becomes berth's.

use std::io::{IsTerminal, Write};

use berth_proto::v1::{ExecRequest, ExecSyncRequest};
use clap::Args;

use super::pods::with_id;
use super::terminal;
use crate::client::CriClient;
use crate::error::{Error, Result};
use crate::streaming::client::{self, RemoteStdio, TlsTrust, Transport};
use crate::streaming::{BoxReader, BoxWriter};

/// `berth exec [-s] [-i] [-t] ID CMD...`.
#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Run synchronously (ExecSync) instead of through the streaming server.
    #[arg(short = 's', long)]
    pub sync: bool,
    /// Timeout in seconds for a synchronous exec (0: none).
    #[arg(long, default_value_t = 0)]
    pub timeout: i64,
    /// Keep stdin open and send it to the command.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a tty (stderr is merged into stdout).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Streaming protocol: spdy or websocket.
    #[arg(long, default_value = "spdy", value_parser = parse_transport)]
    pub transport: Transport,
    /// CA certificate(s) (PEM) to trust for an `https://` streaming URL;
    /// without it the system CA bundle is trusted.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// Container id.
    pub id: String,
    /// Command and arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub cmd: Vec<String>,
}

/// clap's parser for `--transport`.
pub(crate) fn parse_transport(s: &str) -> std::result::Result<Transport, String> {
    s.parse().map_err(|e: Error| e.to_string())
}

/// Runs the command; returns its exit code.
pub async fn exec(cri: &mut CriClient, a: ExecArgs) -> Result<i32> {
    if a.sync {
        return exec_sync(cri, a).await;
    }
    check_tty(a.interactive, a.tty)?;
    let url = cri
        .runtime
        .exec(ExecRequest {
            container_id: a.id.clone(),
            cmd: a.cmd,
            tty: a.tty,
            stdin: a.interactive,
            stdout: true,
            stderr: !a.tty,
            ..Default::default()
        })
        .await
        .map_err(|e| with_id("exec in container", &a.id, e))?
        .into_inner()
        .url;
    let trust = TlsTrust::from_ca_file(a.tls_ca);
    stream(&url, a.transport, &trust, a.interactive, a.tty).await
}

/// crictl's rules for `-t`: it needs `-i`, and stdin must be a terminal
/// (a pty never passes on the EOF of a pipe, so the remote would wait forever).
pub(crate) fn check_tty(stdin: bool, tty: bool) -> Result<()> {
    if !tty {
        return Ok(());
    }
    if !stdin {
        return Err(Error::InvalidArgument(
            "tty: -t must be combined with -i (tty=true must be specified with interactive=true)"
                .into(),
        ));
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::InvalidArgument(
            "tty: -t needs stdin to be a terminal (input is not a terminal); drop -t to pipe input"
                .into(),
        ));
    }
    Ok(())
}

/// Connects the local stdio to the remote command or container behind
/// `url` (exec or attach); returns the remote exit code.
pub(crate) async fn stream(
    url: &str,
    transport: Transport,
    trust: &TlsTrust,
    stdin: bool,
    tty: bool,
) -> Result<i32> {
    let stdio = RemoteStdio {
        stdin: if stdin {
            Some(terminal::stdin()?)
        } else {
            None::<BoxReader>
        },
        stdout: Some(Box::new(tokio::io::stdout()) as BoxWriter),
        stderr: (!tty).then(|| Box::new(tokio::io::stderr()) as BoxWriter),
        tty,
        resize: if tty { Some(terminal::sizes()?) } else { None },
    };
    // Raw only with a remote terminal and keystrokes to send; the guard
    // restores the mode whichever way this returns.
    let _raw = if tty && stdin {
        terminal::RawMode::enable()?
    } else {
        None
    };
    client::remote_command_trusting(url, transport, trust, stdio).await
}

/// ExecSync, printing the command's output; returns its exit code.
async fn exec_sync(cri: &mut CriClient, a: ExecArgs) -> Result<i32> {
    if a.interactive || a.tty {
        return Err(Error::InvalidArgument(
            "exec: -s/--sync cannot be combined with -i or -t (ExecSync has no stdin or tty)"
                .into(),
        ));
    }
    if a.timeout < 0 {
        return Err(Error::InvalidArgument(format!(
            "timeout: {} is negative",
            a.timeout
        )));
    }
    let r = cri
        .runtime
        .exec_sync(ExecSyncRequest {
            container_id: a.id.clone(),
            cmd: a.cmd,
            timeout: a.timeout,
        })
        .await
        .map_err(|e| with_id("exec in container", &a.id, e))?
        .into_inner();
    let write = |mut w: Box<dyn Write>, data: &[u8]| {
        w.write_all(data)
            .and_then(|_| w.flush())
            .map_err(|e| Error::Internal(format!("write exec output: {e}")))
    };
    write(Box::new(std::io::stdout().lock()), &r.stdout)?;
    write(Box::new(std::io::stderr().lock()), &r.stderr)?;
    Ok(r.exit_code)
}

//! Exec/attach over SPDY: the client opens one stream per stdio channel,
//! each named by its `streamType` header; the session starts once every
//! stream the request needs is there.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use super::activity::Activity;
use super::channel::{BoxChannelWriter, Inbound};
use super::remotecommand::{self, RemoteCommand, Streams};
use super::spdy::Session;
use super::Limits;
use super::StreamRuntime;

#[derive(Default)]
struct Collected {
    error: Option<BoxChannelWriter>,
    stdin: Option<Inbound>,
    stdout: Option<BoxChannelWriter>,
    stderr: Option<BoxChannelWriter>,
    resize: Option<Inbound>,
}

/// Serves one remote command on an upgraded SPDY connection.
pub(crate) async fn serve<IO>(
    io: IO,
    protocol: &'static str,
    rc: RemoteCommand,
    runtime: Arc<dyn StreamRuntime>,
    limits: Limits,
    cancel: CancellationToken,
) where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let activity = Activity::new();
    activity.spawn_watchdog(limits.idle, cancel.clone());
    let (session, mut incoming) = Session::start(io, activity, cancel.clone());
    // v3 added the resize stream, v4 the JSON status.
    let resize_supported = matches!(protocol, "v3.channel.k8s.io" | "v4.channel.k8s.io");
    let o = rc.opts;
    let want_resize = o.tty && resize_supported;
    let mut c = Collected::default();
    let complete = |c: &Collected| {
        c.error.is_some()
            && (!o.stdin || c.stdin.is_some())
            && (!o.stdout || c.stdout.is_some())
            && (!o.stderr || c.stderr.is_some())
            && (!want_resize || c.resize.is_some())
    };
    let deadline = tokio::time::sleep(limits.stream_creation);
    tokio::pin!(deadline);
    while !complete(&c) {
        tokio::select! {
            s = incoming.recv() => {
                let Some(s) = s else { return };
                let kind = s.header("streamtype").unwrap_or_default().to_string();
                let (inbound, writer) = (s.inbound, Box::new(s.writer) as BoxChannelWriter);
                match kind.as_str() {
                    "error" => c.error = Some(writer),
                    "stdin" => c.stdin = Some(inbound),
                    "stdout" => c.stdout = Some(writer),
                    "stderr" => c.stderr = Some(writer),
                    "resize" => c.resize = Some(inbound),
                    other => tracing::debug!(stream_type = other, "spdy: ignoring unexpected stream"),
                }
            }
            _ = &mut deadline => {
                tracing::warn!("streaming: timed out waiting for the client to create streams");
                session.close().await;
                return;
            }
            _ = cancel.cancelled() => return,
        }
    }
    // Streams opened later are not used, but must not block the reader.
    tokio::spawn(async move { while incoming.recv().await.is_some() {} });
    let streams = Streams {
        stdin: c.stdin.filter(|_| o.stdin),
        stdout: c.stdout.filter(|_| o.stdout),
        stderr: c.stderr.filter(|_| o.stderr),
        resize: c.resize.filter(|_| want_resize),
        error: c.error.expect("complete() checked the error stream"),
        json_status: protocol == "v4.channel.k8s.io",
    };
    remotecommand::run(runtime, &rc, streams, cancel.clone()).await;
    if !cancel.is_cancelled() {
        session.close().await;
    }
}

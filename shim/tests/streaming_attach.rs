//! Attach through the streaming server to a monitor's attach socket: the
//! socket side is a fake monitor speaking berth-monitor's frame format (from
//! `berth_runtime::monitor::attach`), the client side is SPDY.

mod streaming_support;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use berth_runtime::monitor::attach as frame;
use berth_shim::error::{Error, Result};
use berth_shim::streaming::monitor_attach::attach_via_monitor;
use berth_shim::streaming::{
    AsyncReadWrite, ProcessIo, StreamRuntime, StreamingConfig, StreamingServer,
};
use streaming_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

struct MonitorRuntime {
    socket: PathBuf,
}

#[async_trait::async_trait]
impl StreamRuntime for MonitorRuntime {
    async fn exec(&self, _: &str, _: Vec<String>, _: bool, _: bool) -> Result<ProcessIo> {
        Err(Error::Unimplemented("exec".into()))
    }
    async fn attach(&self, _: &str, tty: bool, stdin: bool) -> Result<ProcessIo> {
        attach_via_monitor(&self.socket, tty, stdin).await
    }
    async fn port_forward(&self, _: &str, _: u16) -> Result<Box<dyn AsyncReadWrite>> {
        Err(Error::Unimplemented("port_forward".into()))
    }
}

/// Frames the fake monitor received, in order.
type FrameLog = Arc<Mutex<Vec<(u8, Vec<u8>)>>>;

/// One attach client: greets on stdout and stderr, echoes STDIN on stdout,
/// records RESIZE and STDIN_CLOSE, and sends EXIT 9 after STDIN_CLOSE.
async fn fake_monitor(l: UnixListener, log: FrameLog) {
    let (mut s, _) = l.accept().await.unwrap();
    s.write_all(&frame::encode(frame::STDOUT, b"hello\n"))
        .await
        .unwrap();
    s.write_all(&frame::encode(frame::STDERR, b"warn\n"))
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await.unwrap();
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        for (kind, payload) in frame::decode(&mut buf).unwrap() {
            log.lock().unwrap().push((kind, payload.clone()));
            match kind {
                frame::STDIN => s
                    .write_all(&frame::encode(frame::STDOUT, &payload))
                    .await
                    .unwrap(),
                frame::STDIN_CLOSE => {
                    s.write_all(&frame::encode(frame::EXIT, &9i32.to_be_bytes()))
                        .await
                        .unwrap();
                    return;
                }
                _ => {}
            }
        }
    }
}

/// A streaming server whose runtime attaches through a fake monitor's socket
/// in a new tempdir; returns the tempdir (keep it), the monitor's frame log,
/// the monitor task and the server.
async fn server_on_fake_monitor() -> (
    tempfile::TempDir,
    FrameLog,
    tokio::task::JoinHandle<()>,
    StreamingServer,
) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("attach.sock");
    let log = FrameLog::default();
    let monitor = tokio::spawn(fake_monitor(
        UnixListener::bind(&socket).unwrap(),
        log.clone(),
    ));
    let srv = StreamingServer::start(
        &StreamingConfig::default(),
        Arc::new(MonitorRuntime { socket }),
    )
    .await
    .unwrap();
    (dir, log, monitor, srv)
}

#[tokio::test]
async fn spdy_attach_through_the_monitor_socket() {
    let (_dir, log, monitor, srv) = server_on_fake_monitor().await;
    let url = srv.attach_url(&attach_req(false)).unwrap();
    let mut c = SpdyClient::connect(&url, &["v4.channel.k8s.io"]).await;
    let error = c.open(&[("streamType", "error")]).await;
    let stdin = c.open(&[("streamType", "stdin")]).await;
    let stdout = c.open(&[("streamType", "stdout")]).await;
    let stderr = c.open(&[("streamType", "stderr")]).await;
    c.data(stdin, b"typed", true).await;
    let mut r = Received::default();
    c.read_until(&mut r, |r| r.fin.contains(&error)).await;
    assert_eq!(r.data[&stdout], b"hello\ntyped");
    assert_eq!(r.data[&stderr], b"warn\n");
    let st: serde_json::Value = serde_json::from_slice(&r.data[&error]).unwrap();
    assert_eq!(
        st["status"], "Success",
        "attach reports success whatever the exit code"
    );
    monitor.await.unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        vec![
            (frame::STDIN, b"typed".to_vec()),
            (frame::STDIN_CLOSE, vec![])
        ]
    );
}

#[tokio::test]
async fn websocket_tty_attach_sends_resize_frames() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let (_dir, log, monitor, srv) = server_on_fake_monitor().await;
    let url = srv.attach_url(&attach_req(true)).unwrap();
    let (mut ws, _) = ws_connect(&url, "v5.channel.k8s.io").await;
    ws.send(Message::binary(
        b"\x04{\"Width\":132,\"Height\":43}".to_vec(),
    ))
    .await
    .unwrap();
    // Resize first, then stdin and its close, so the log order is fixed.
    wait::until_now(
        "the monitor to get the resize",
        std::time::Duration::from_secs(10),
        || {
            let seen = log.lock().unwrap().clone();
            wait::check(!seen.is_empty(), seen)
        },
    )
    .await;
    ws.send(Message::binary(b"\x00ls\n".to_vec()))
        .await
        .unwrap();
    ws.send(Message::binary(vec![255, 0])).await.unwrap();
    let mut out = Vec::new();
    let mut status = Vec::new();
    while let Some(Ok(m)) = ws.next().await {
        match m {
            Message::Binary(b) if b[0] == 1 => out.extend_from_slice(&b[1..]),
            Message::Binary(b) if b[0] == 3 => status.extend_from_slice(&b[1..]),
            Message::Close(_) => break,
            _ => {}
        }
    }
    // With a tty, the monitor's stderr frames arrive on stdout.
    assert_eq!(out, b"hello\nwarn\nls\n");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&status).unwrap()["status"],
        "Success"
    );
    monitor.await.unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        vec![
            (frame::RESIZE, vec![0, 43, 0, 132]),
            (frame::STDIN, b"ls\n".to_vec()),
            (frame::STDIN_CLOSE, vec![])
        ]
    );
}

/// Regression: an attach without stdin shut down its write half at once,
/// and a monitor that takes end of input for a disconnect (every monitor
/// before the fix, still running after berthd is upgraded) dropped it, so the
/// attach failed with "attach socket closed before the container exited".
#[tokio::test]
async fn attach_without_stdin_keeps_its_socket_open_until_the_exit() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("attach.sock");
    let l = UnixListener::bind(&socket).unwrap();
    let (exit_now, exit_rx) = tokio::sync::oneshot::channel::<()>();
    let monitor = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        s.write_all(&frame::encode(frame::STDOUT, b"hello\n"))
            .await
            .unwrap();
        let mut chunk = [0u8; 64];
        tokio::select! {
            biased;
            // The old monitor's rule: end of input = client gone.
            _ = s.read(&mut chunk) => false,
            _ = exit_rx => {
                s.write_all(&frame::encode(frame::EXIT, &5i32.to_be_bytes()))
                    .await
                    .unwrap();
                true
            }
        }
    });
    let io = attach_via_monitor(&socket, false, false).await.unwrap();
    let mut out = io.stdout.unwrap();
    let mut got = vec![0u8; 6];
    out.read_exact(&mut got).await.unwrap();
    assert_eq!(got, b"hello\n");
    exit_now.send(()).unwrap();
    assert_eq!(io.exit.await.unwrap(), 5);
    assert!(monitor.await.unwrap(), "the attach client ended its input");
}

//! Exec and attach through the streaming server, over SPDY/3.1 and WebSocket,
//! with clients written here and (when installed) Python's websocket-client.
//! The container runtime is a test double running local processes.

mod streaming_support;

use std::time::Duration;

use berth_proto::v1::{AttachRequest, ExecRequest};
use futures::{SinkExt, StreamExt};
use streaming_support::*;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

fn exec_req(cmd: &str, stdin: bool, tty: bool) -> ExecRequest {
    ExecRequest {
        container_id: "c1".into(),
        cmd: vec!["sh".into(), "-c".into(), cmd.into()],
        tty,
        stdin,
        stdout: true,
        stderr: !tty,
        ..Default::default()
    }
}

fn status(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| {
        panic!(
            "error stream is not JSON ({e}): {:?}",
            String::from_utf8_lossy(bytes)
        )
    })
}

#[tokio::test]
async fn spdy_exec_returns_stdout_stderr_and_exit_code() {
    let (srv, rt) = server(60).await;
    let url = srv
        .exec_url(&exec_req("echo out; echo err >&2; exit 3", false, false))
        .unwrap();
    let mut c = SpdyClient::connect(&url, &["v4.channel.k8s.io", "v3.channel.k8s.io"]).await;
    assert_eq!(c.protocol, "v4.channel.k8s.io");
    let error = c.open(&[("streamType", "error")]).await;
    let stdout = c.open(&[("streamType", "stdout")]).await;
    let stderr = c.open(&[("streamType", "stderr")]).await;
    let mut r = Received::default();
    c.read_until(&mut r, |r| r.fin.contains(&error) && r.goaway)
        .await;
    for id in [error, stdout, stderr] {
        assert!(r.replied.contains(&id), "no SYN_REPLY for {id}");
    }
    assert_eq!(r.data[&stdout], b"out\n");
    assert_eq!(r.data[&stderr], b"err\n");
    let st = status(&r.data[&error]);
    assert_eq!(st["status"], "Failure");
    assert_eq!(st["reason"], "NonZeroExitCode");
    assert_eq!(st["details"]["causes"][0]["reason"], "ExitCode");
    assert_eq!(st["details"]["causes"][0]["message"], "3");
    // The connection ends after the status.
    assert!(c.next_frame().await.is_none());
    let pid = rt.pids.lock().unwrap()[0];
    assert!(wait_gone(pid, 5).await);
}

#[tokio::test]
async fn spdy_exec_success_and_stdin_with_half_close() {
    let (srv, _rt) = server(60).await;
    let url = srv
        .exec_url(&exec_req("cat; echo done", true, false))
        .unwrap();
    let mut c = SpdyClient::connect(&url, &["v4.channel.k8s.io"]).await;
    let error = c.open(&[("streamType", "error")]).await;
    let stdin = c.open(&[("streamType", "stdin")]).await;
    let stdout = c.open(&[("streamType", "stdout")]).await;
    let _stderr = c.open(&[("streamType", "stderr")]).await;
    // More than one 64 KiB window each way: flow control must not stall.
    let big: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    for chunk in big.chunks(30_000) {
        c.data(stdin, chunk, false).await;
    }
    c.data(stdin, b"", true).await;
    let mut r = Received::default();
    c.read_until(&mut r, |r| r.fin.contains(&error)).await;
    let mut want = big.clone();
    want.extend_from_slice(b"done\n");
    assert_eq!(r.data[&stdout].len(), want.len());
    assert!(r.data[&stdout] == want);
    assert_eq!(
        status(&r.data[&error]),
        serde_json::json!({"metadata":{},"status":"Success"})
    );
}

#[tokio::test]
async fn spdy_v2_reports_failure_as_plain_text_and_success_as_nothing() {
    let (srv, _rt) = server(60).await;
    for (cmd, want_empty) in [("exit 0", true), ("exit 4", false)] {
        let url = srv.exec_url(&exec_req(cmd, false, false)).unwrap();
        let mut c = SpdyClient::connect(&url, &["v2.channel.k8s.io"]).await;
        assert_eq!(c.protocol, "v2.channel.k8s.io");
        let error = c.open(&[("streamType", "error")]).await;
        c.open(&[("streamType", "stdout")]).await;
        c.open(&[("streamType", "stderr")]).await;
        let mut r = Received::default();
        c.read_until(&mut r, |r| r.fin.contains(&error)).await;
        let msg = r.data.get(&error).cloned().unwrap_or_default();
        if want_empty {
            assert!(msg.is_empty(), "{msg:?}");
        } else {
            assert!(String::from_utf8(msg).unwrap().contains("exit code 4"));
        }
    }
}

#[tokio::test]
async fn spdy_tty_resize_changes_stty_size() {
    let (srv, _rt) = server(60).await;
    let url = srv.exec_url(&exec_req("exec sh", true, true)).unwrap();
    let mut c = SpdyClient::connect(&url, &["v4.channel.k8s.io"]).await;
    let error = c.open(&[("streamType", "error")]).await;
    let stdin = c.open(&[("streamType", "stdin")]).await;
    let stdout = c.open(&[("streamType", "stdout")]).await;
    let resize = c.open(&[("streamType", "resize")]).await;
    let mut r = Received::default();
    for (w, h) in [(123u16, 45u16), (80, 20)] {
        // Go's json.Encoder: one object per line.
        let msg = format!("{{\"Width\":{w},\"Height\":{h}}}\n");
        c.data(resize, msg.as_bytes(), false).await;
        let want = format!("{h} {w}");
        let mut seen = false;
        for _ in 0..20 {
            c.data(stdin, b"stty size\n", false).await;
            let start = r.data.get(&stdout).map_or(0, Vec::len);
            let _ = tokio::time::timeout(
                Duration::from_millis(500),
                c.read_until(&mut r, |r| {
                    r.data
                        .get(&stdout)
                        .is_some_and(|o| String::from_utf8_lossy(&o[start..]).contains(&want))
                }),
            )
            .await;
            let out = r
                .data
                .get(&stdout)
                .map(|o| String::from_utf8_lossy(o).to_string());
            if out.is_some_and(|o| o[start..].contains(&want)) {
                seen = true;
                break;
            }
        }
        assert!(
            seen,
            "never saw {want:?} in {:?}",
            String::from_utf8_lossy(&r.data[&stdout])
        );
    }
    c.data(stdin, b"exit 5\n", false).await;
    c.read_until(&mut r, |r| r.fin.contains(&error)).await;
    assert_eq!(
        status(&r.data[&error])["details"]["causes"][0]["message"],
        "5"
    );
}

#[tokio::test]
async fn used_unknown_and_mismatched_tokens_get_404_or_400() {
    let (srv, _rt) = server(60).await;
    let url = srv.exec_url(&exec_req("true", false, false)).unwrap();
    let mut c = SpdyClient::connect(&url, &["v4.channel.k8s.io"]).await;
    let error = c.open(&[("streamType", "error")]).await;
    c.open(&[("streamType", "stdout")]).await;
    c.open(&[("streamType", "stderr")]).await;
    let mut r = Received::default();
    c.read_until(&mut r, |r| r.fin.contains(&error)).await;
    let spdy = [
        ("Connection", "Upgrade"),
        ("Upgrade", "SPDY/3.1"),
        ("X-Stream-Protocol-Version", "v4.channel.k8s.io"),
    ];
    let (code, ..) = http_request(&url, &spdy).await;
    assert_eq!(code, 404, "a used token must not work twice");
    let (base, _) = split_url(&url);
    let (code, ..) = http_request(&format!("http://{base}/exec/bogus"), &spdy).await;
    assert_eq!(code, 404);
    // An exec token on the attach route.
    let url = srv.exec_url(&exec_req("true", false, false)).unwrap();
    let (code, ..) = http_request(&url.replace("/exec/", "/attach/"), &spdy).await;
    assert_eq!(code, 400);
    // No protocol the server speaks: 403 and the accepted list.
    let url = srv.exec_url(&exec_req("true", false, false)).unwrap();
    let (code, h, ..) = http_request(
        &url,
        &[
            ("Connection", "Upgrade"),
            ("Upgrade", "SPDY/3.1"),
            ("X-Stream-Protocol-Version", "v9.channel.k8s.io"),
        ],
    )
    .await;
    assert_eq!(code, 403);
    assert!(h
        .iter()
        .any(|(k, v)| k == "x-accepted-stream-protocol-versions" && v == "v4.channel.k8s.io"));
}

#[tokio::test]
async fn url_validation_names_the_field() {
    let (srv, _rt) = server(60).await;
    let mut r = exec_req("true", false, true);
    r.stderr = true;
    let e = srv.exec_url(&r).unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.to_string().contains("stderr"));
    let a = AttachRequest {
        container_id: "c1".into(),
        ..Default::default()
    };
    assert!(srv
        .attach_url(&a)
        .unwrap_err()
        .to_string()
        .contains("stdin"));
    let url = srv.exec_url(&exec_req("true", false, false)).unwrap();
    assert!(url.starts_with(&format!(
        "http://127.0.0.1:{}/exec/",
        srv.local_addr().port()
    )));
}

#[tokio::test]
async fn runtime_errors_become_an_internal_error_status() {
    let (srv, _rt) = server(60).await;
    let mut req = exec_req("true", false, false);
    req.container_id = "missing".into();
    let url = srv.exec_url(&req).unwrap();
    let mut c = SpdyClient::connect(&url, &["v4.channel.k8s.io"]).await;
    let error = c.open(&[("streamType", "error")]).await;
    c.open(&[("streamType", "stdout")]).await;
    c.open(&[("streamType", "stderr")]).await;
    let mut r = Received::default();
    c.read_until(&mut r, |r| r.fin.contains(&error)).await;
    let st = status(&r.data[&error]);
    assert_eq!(st["reason"], "InternalError");
    assert!(st["message"]
        .as_str()
        .unwrap()
        .contains("container missing not found"));
}

#[tokio::test]
async fn spdy_attach_reports_success_whatever_the_exit_code() {
    let (srv, _rt) = server(60).await;
    let url = srv.attach_url(&attach_req(false)).unwrap();
    let mut c = SpdyClient::connect(&url, &["v4.channel.k8s.io"]).await;
    let error = c.open(&[("streamType", "error")]).await;
    let stdin = c.open(&[("streamType", "stdin")]).await;
    let stdout = c.open(&[("streamType", "stdout")]).await;
    c.open(&[("streamType", "stderr")]).await;
    c.data(stdin, b"hi\n", true).await;
    let mut r = Received::default();
    c.read_until(&mut r, |r| r.fin.contains(&error)).await;
    assert_eq!(r.data[&stdout], b"attached\nhi\n");
    assert_eq!(status(&r.data[&error])["status"], "Success");
}

#[tokio::test]
async fn client_going_away_kills_the_exec_and_idle_connections_are_closed() {
    let (srv, rt) = server(1).await;
    // Client disappears mid-command.
    let url = srv.exec_url(&exec_req("sleep 30", false, false)).unwrap();
    let mut c = SpdyClient::connect(&url, &["v4.channel.k8s.io"]).await;
    c.open(&[("streamType", "error")]).await;
    c.open(&[("streamType", "stdout")]).await;
    c.open(&[("streamType", "stderr")]).await;
    let pid = nth_pid(&rt, 1).await;
    drop(c);
    assert!(
        wait_gone(pid, 5).await,
        "exec'd process {pid} survived its client"
    );

    // A silent session: the 1 s idle timeout ends it and the process.
    let url = srv.exec_url(&exec_req("sleep 30", false, false)).unwrap();
    let mut c = SpdyClient::connect(&url, &["v4.channel.k8s.io"]).await;
    c.open(&[("streamType", "error")]).await;
    c.open(&[("streamType", "stdout")]).await;
    c.open(&[("streamType", "stderr")]).await;
    let started = std::time::Instant::now();
    let mut r = Received::default();
    c.read_until(&mut r, |_| false).await; // returns at EOF
    assert!(started.elapsed() < Duration::from_secs(10));
    let pid = rt.pids.lock().unwrap()[1];
    assert!(
        wait_gone(pid, 5).await,
        "idle session left process {pid} behind"
    );
}

/// Collects channel payloads until the server closes.
async fn ws_collect(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut chans = vec![Vec::new(); 5];
    let mut frames = Vec::new();
    while let Some(m) = tokio::time::timeout(Duration::from_secs(20), ws.next())
        .await
        .expect("server went silent")
    {
        match m {
            Ok(Message::Binary(b)) => {
                frames.push(b.to_vec());
                chans[b[0] as usize].extend_from_slice(&b[1..]);
            }
            Ok(Message::Close(_)) | Err(_) => break,
            _ => {}
        }
    }
    (chans, frames)
}

#[tokio::test]
async fn websocket_v5_exec_returns_streams_exit_code_and_closes_stdin() {
    let (srv, _rt) = server(60).await;
    let url = srv
        .exec_url(&exec_req("echo out; echo err >&2; exit 3", false, false))
        .unwrap();
    let (mut ws, proto) = ws_connect(&url, "v5.channel.k8s.io, v4.channel.k8s.io").await;
    assert_eq!(proto, "v5.channel.k8s.io");
    let (chans, frames) = ws_collect(&mut ws).await;
    // The first message is the empty "connected" message on stdout.
    assert_eq!(frames[0], vec![1u8]);
    assert_eq!(chans[1], b"out\n");
    assert_eq!(chans[2], b"err\n");
    let st = status(&chans[3]);
    assert_eq!(st["details"]["causes"][0]["message"], "3");

    // stdin through `cat`, ended by the v5 close signal.
    let url = srv
        .exec_url(&exec_req("cat; echo eof", true, false))
        .unwrap();
    let (mut ws, _) = ws_connect(&url, "v5.channel.k8s.io").await;
    ws.send(Message::binary(b"\x00hello ".to_vec()))
        .await
        .unwrap();
    ws.send(Message::binary(b"\x00world\n".to_vec()))
        .await
        .unwrap();
    ws.send(Message::binary(vec![255u8, 0])).await.unwrap();
    let (chans, _) = ws_collect(&mut ws).await;
    assert_eq!(chans[1], b"hello world\neof\n");
    assert_eq!(status(&chans[3])["status"], "Success");
}

#[tokio::test]
async fn websocket_v4_tty_resize_and_base64() {
    let (srv, _rt) = server(60).await;
    let url = srv
        .exec_url(&exec_req(AFTER_RESIZE_STTY_SIZE, false, true))
        .unwrap();
    let (mut ws, proto) = ws_connect(&url, "v4.channel.k8s.io").await;
    assert_eq!(proto, "v4.channel.k8s.io");
    ws.send(Message::binary(
        b"\x04{\"Width\":91,\"Height\":17}".to_vec(),
    ))
    .await
    .unwrap();
    let (chans, _) = ws_collect(&mut ws).await;
    assert_eq!(String::from_utf8_lossy(&chans[1]).trim(), "17 91");
    assert_eq!(status(&chans[3])["status"], "Success");

    let url = srv
        .exec_url(&exec_req("printf 'a\\377b'", false, false))
        .unwrap();
    let (mut ws, proto) = ws_connect(&url, "v4.base64.channel.k8s.io").await;
    assert_eq!(proto, "v4.base64.channel.k8s.io");
    let mut stdout = Vec::new();
    while let Some(Ok(m)) = ws.next().await {
        match m {
            Message::Text(t) => {
                let t = t.as_str();
                if let Some(payload) = t.strip_prefix('1') {
                    use base64::Engine;
                    stdout.extend(
                        base64::engine::general_purpose::STANDARD
                            .decode(payload)
                            .unwrap(),
                    );
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    assert_eq!(stdout, b"a\xffb");
}

#[tokio::test]
async fn websocket_client_leaving_kills_the_exec() {
    let (srv, rt) = server(60).await;
    let url = srv.exec_url(&exec_req("sleep 30", false, false)).unwrap();
    let (ws, _) = ws_connect(&url, "v5.channel.k8s.io").await;
    let pid = nth_pid(&rt, 1).await;
    drop(ws);
    assert!(wait_gone(pid, 5).await);
}

const PY_CLIENT: &str = r#"
import json, sys, websocket
ws = websocket.create_connection(sys.argv[1], subprotocols=["v5.channel.k8s.io"])
ws.send_binary(b"\x00from python\n")
ws.send_binary(b"\xff\x00")
chans = {}
while True:
    try:
        op, data = ws.recv_data()
    except websocket.WebSocketConnectionClosedException:
        break
    if op == websocket.ABNF.OPCODE_CLOSE:
        break
    if data:
        chans.setdefault(data[0], b"")
        chans[data[0]] += data[1:]
print(json.dumps({"subprotocol": ws.subprotocol, **{str(k): v.decode() for k, v in chans.items()}}))
"#;

#[tokio::test]
async fn python_websocket_client_interoperates() {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import websocket"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!(
            "SKIP: python3 with websocket-client (pip install websocket-client) not available"
        );
        return;
    }
    let (srv, _rt) = server(60).await;
    let url = srv
        .exec_url(&exec_req("cat; echo err >&2; exit 2", true, false))
        .unwrap()
        .replacen("http://", "ws://", 1);
    let out = tokio::process::Command::new("python3")
        .args(["-c", PY_CLIENT, &url])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["subprotocol"], "v5.channel.k8s.io");
    assert_eq!(v["1"], "from python\n");
    assert_eq!(v["2"], "err\n");
    let st: serde_json::Value = serde_json::from_str(v["3"].as_str().unwrap()).unwrap();
    assert_eq!(st["details"]["causes"][0]["message"], "2");
}

#[tokio::test]
async fn spdy_send_windows_are_honoured_once_the_peer_uses_flow_control() {
    use berth_shim::streaming::spdy::frame::{Setting, SETTINGS_INITIAL_WINDOW_SIZE};
    use berth_shim::streaming::spdy::Frame;

    let (srv, _rt) = server(60).await;
    let url = srv
        .exec_url(&exec_req("head -c 100000 /dev/zero", false, false))
        .unwrap();
    let mut c = SpdyClient::connect(&url, &["v4.channel.k8s.io"]).await;
    c.send(Frame::Settings {
        flags: 0,
        entries: vec![Setting {
            flags: 0,
            id: SETTINGS_INITIAL_WINDOW_SIZE,
            value: 1000,
        }],
    })
    .await;
    c.send(Frame::Ping { id: 5 }).await;
    let error = c.open(&[("streamType", "error")]).await;
    let stdout = c.open(&[("streamType", "stdout")]).await;
    c.open(&[("streamType", "stderr")]).await;
    let len = |r: &Received| r.data.get(&stdout).map_or(0, Vec::len);
    let mut r = Received::default();
    // The ping is answered; the stream window stops the output at 1000 bytes.
    let mut pong = false;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(800);
    while let Ok(Some(f)) = tokio::time::timeout_at(deadline, c.next_frame()).await {
        match f {
            Frame::Ping { id } => pong |= id == 5,
            Frame::Data {
                stream_id, data, ..
            } => r
                .data
                .entry(stream_id)
                .or_default()
                .extend_from_slice(&data),
            _ => {}
        }
    }
    assert!(pong, "ping not echoed");
    assert_eq!(len(&r), 1000);
    // More stream window: now the 64 KiB session window is the limit.
    c.send(Frame::WindowUpdate {
        stream_id: stdout,
        delta: 1_000_000,
    })
    .await;
    let _ = tokio::time::timeout(
        Duration::from_millis(800),
        c.read_until(&mut r, |r| len(r) >= 65_536),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = tokio::time::timeout(Duration::from_millis(200), c.read_until(&mut r, |_| false)).await;
    assert_eq!(len(&r), 65_536);
    c.send(Frame::WindowUpdate {
        stream_id: 0,
        delta: 1_000_000,
    })
    .await;
    c.read_until(&mut r, |r| r.fin.contains(&error)).await;
    assert_eq!(len(&r), 100_000);
    assert_eq!(status(&r.data[&error])["status"], "Success");
}

#[tokio::test]
async fn spdy_protocol_errors_end_the_connection_with_goaway() {
    use berth_shim::streaming::spdy::Frame;

    let (srv, _rt) = server(60).await;
    let url = srv.exec_url(&exec_req("sleep 30", false, false)).unwrap();
    let mut c = SpdyClient::connect(&url, &["v4.channel.k8s.io"]).await;
    c.open(&[("streamType", "error")]).await;
    // A SPDY/2 PING.
    c.sock
        .write_all(&[0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1])
        .await
        .unwrap();
    let mut goaway = None;
    while let Some(f) = tokio::time::timeout(Duration::from_secs(5), c.next_frame())
        .await
        .unwrap()
    {
        if let Frame::GoAway { status, .. } = f {
            goaway = Some(status);
        }
    }
    assert_eq!(goaway, Some(1), "GOAWAY with PROTOCOL_ERROR expected");
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[tokio::test]
async fn sessions_release_their_sockets_pipes_and_ptys() {
    let (srv, rt) = server(60).await;
    // Warm up lazily created runtime resources before taking the baseline.
    let url = srv.exec_url(&exec_req("true", false, false)).unwrap();
    let (mut ws, _) = ws_connect(&url, "v5.channel.k8s.io").await;
    ws_collect(&mut ws).await;
    drop(ws);
    let warm_up = rt.pids.lock().unwrap()[0];
    assert!(
        wait_gone(warm_up, 5).await,
        "warm-up process {warm_up} left"
    );
    let before = open_fds();
    for i in 0..10 {
        // Completed SPDY session with stdin.
        let url = srv.exec_url(&exec_req("cat", true, false)).unwrap();
        let mut c = SpdyClient::connect(&url, &["v4.channel.k8s.io"]).await;
        let error = c.open(&[("streamType", "error")]).await;
        let stdin = c.open(&[("streamType", "stdin")]).await;
        c.open(&[("streamType", "stdout")]).await;
        c.open(&[("streamType", "stderr")]).await;
        c.data(stdin, b"x", true).await;
        let mut r = Received::default();
        c.read_until(&mut r, |r| r.fin.contains(&error)).await;
        drop(c);
        // Abandoned tty session over WebSocket.
        let url = srv.exec_url(&exec_req("sleep 30", true, true)).unwrap();
        let (ws, _) = ws_connect(&url, "v5.channel.k8s.io").await;
        nth_pid(&rt, 2 * (i + 1) + 1).await;
        drop(ws);
    }
    let pids = rt.pids.lock().unwrap().clone();
    for pid in pids {
        assert!(wait_gone(pid, 5).await, "process {pid} left behind");
    }
    let mut after = open_fds();
    for _ in 0..50 {
        if after <= before + 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = open_fds();
    }
    let links: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        after <= before + 2,
        "fds leaked: {before} before, {after} after: {links:?}"
    );
}

//! Exec, Attach and PortForward end to end: the real berthd returns a URL on its
//! streaming server, and an independent client (Python's `websocket-client`,
//! speaking the Kubernetes channel protocol as kubectl does over WebSocket)
//! drives a real container through it.

use std::process::Command;
use std::time::Duration;

use berth_integration::calls;
use berth_integration::client::Cri;
use berth_integration::env::{self, TestEnv};
use berth_integration::{skip, skip_if, wait};
use berth_proto::v1::*;

fn python_websocket() -> Option<String> {
    let ok = Command::new("python3")
        .args(["-c", "import websocket"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    (!ok).then(|| "python3 websocket-client not installed (pip install websocket-client)".into())
}

fn skip_reason() -> Option<String> {
    skip::first(&[skip::no_pod_env(), python_websocket()])
}

/// The channel-protocol client: connects to `url` with `subprotocol`, sends
/// `send` frames (channel, text) after the connection opens, and prints every
/// received frame as JSON `[channel, text]` pairs once the server closes or
/// the received text contains `until` (when not empty).
const CLIENT: &str = r#"
import json, sys, websocket
url, proto, sends, until = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
ws = websocket.create_connection(url.replace("http", "ws", 1), subprotocols=[proto], timeout=20)
for ch, text in sends:
    ws.send_binary(bytes([ch]) + text.encode())
out = []
try:
    while True:
        op, data = ws.recv_data()
        if op == websocket.ABNF.OPCODE_CLOSE:
            break
        if data:
            out.append([data[0], data[1:].decode("latin-1")])
            if until and until in "".join(t for c, t in out):
                break
except (websocket.WebSocketConnectionClosedException, websocket.WebSocketTimeoutException):
    pass
print(json.dumps(out))
"#;

fn ws_client(url: &str, proto: &str, sends: &[(u8, &str)], until: &str) -> Vec<(u8, String)> {
    let out = Command::new("python3")
        .args([
            "-c",
            CLIENT,
            url,
            proto,
            &serde_json::to_string(sends).unwrap(),
            until,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn joined(frames: &[(u8, String)], channel: u8) -> String {
    frames
        .iter()
        .filter(|(c, _)| *c == channel)
        .map(|(_, t)| t.as_str())
        .collect()
}

struct Env {
    base: TestEnv,
    cri: Cri,
    pod: String,
    pod_config: PodSandboxConfig,
    busybox: String,
}

async fn env() -> Env {
    let mut base = TestEnv::start_for_pods().await.unwrap();
    let pod_config = base.pod_config("stream");
    let pod = base.run_pod(&pod_config).await.unwrap();
    Env {
        cri: base.cri.clone(),
        busybox: base.image("busybox"),
        base,
        pod,
        pod_config,
    }
}

/// Creates and starts a busybox container running `command` in the pod.
async fn run(env: &mut Env, name: &str, command: &[&str], stdin: bool) -> String {
    let config = ContainerConfig {
        stdin,
        ..env::container_config(name, &env.busybox, command)
    };
    env.base
        .run_container(&env.pod, &env.pod_config, config)
        .await
        .unwrap()
}

#[tokio::test]
async fn exec_attach_and_port_forward_through_the_streaming_server() {
    skip_if!(skip_reason());
    let mut env = env().await;
    let sleeper = run(&mut env, "sleeper", &["sleep", "3600"], false).await;

    // Exec: both streams and the exit code, as the Kubernetes Status on channel 3.
    let url = calls::exec_url(
        &mut env.cri,
        &sleeper,
        &["sh", "-c", "echo out; echo err >&2; exit 3"],
        false,
        false,
    )
    .await;
    let u = url.clone();
    let frames = tokio::task::spawn_blocking(move || ws_client(&u, "v4.channel.k8s.io", &[], ""))
        .await
        .unwrap();
    assert_eq!(joined(&frames, 1), "out\n");
    assert_eq!(joined(&frames, 2), "err\n");
    let status: serde_json::Value = serde_json::from_str(&joined(&frames, 3)).unwrap();
    assert_eq!(status["status"], "Failure", "{status}");
    assert_eq!(status["reason"], "NonZeroExitCode", "{status}");
    assert_eq!(status["details"]["causes"][0]["message"], "3", "{status}");

    // The token was single-use.
    let host = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let path = format!(
        "/{}",
        url.trim_start_matches("http://").split_once('/').unwrap().1
    );
    let code = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&host).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.lines().next().unwrap_or("").to_string()
    })
    .await
    .unwrap();
    assert!(code.contains("404"), "reused token: {code}");

    // Exec of a stopped-or-unknown container is refused before any URL exists.
    let err = env
        .cri
        .runtime
        .exec(ExecRequest {
            container_id: "nope".into(),
            cmd: vec!["true".into()],
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    // Attach: feed the main process's stdin, read its stdout.
    let echo = run(
        &mut env,
        "echo",
        &["sh", "-c", "while read l; do echo got:$l; done"],
        true,
    )
    .await;
    let url = calls::attach_url(&mut env.cri, &echo, true, false).await;
    let frames = tokio::task::spawn_blocking(move || {
        ws_client(&url, "v4.channel.k8s.io", &[(0, "hello\n")], "got:hello")
    })
    .await
    .unwrap();
    assert!(joined(&frames, 1).contains("got:hello"), "{frames:?}");

    // Port-forward to the pod's httpd on localhost inside its network namespace.
    let web = run(
        &mut env,
        "web",
        &[
            "sh",
            "-c",
            "mkdir -p /www && echo pf-ok > /www/index.html && exec httpd -f -p 8080 -h /www",
        ],
        false,
    )
    .await;
    let get = ["wget", "-qO-", "http://127.0.0.1:8080/"];
    wait::until(
        "httpd to serve in the pod",
        Duration::from_secs(20),
        async || {
            let r = calls::exec_sync(&mut env.cri, &web, &get, 5).await;
            wait::check(r.as_ref().is_ok_and(|r| r.exit_code == 0), r)
        },
    )
    .await;
    let url = calls::port_forward_url(&mut env.cri, &env.pod, 8080).await;
    let url = format!("{url}?ports=8080");
    let frames = tokio::task::spawn_blocking(move || {
        ws_client(
            &url,
            "v4.channel.k8s.io",
            &[(0, "GET / HTTP/1.0\r\n\r\n")],
            "pf-ok",
        )
    })
    .await
    .unwrap();
    // Channel 0 carries data (after its 2-byte port header), channel 1 errors.
    let data = joined(&frames, 0);
    assert!(data.contains("pf-ok"), "{frames:?}");

    // Removing the pod stops its containers and its pid-namespace init.
    let pod = env.pod.clone();
    env.base.remove_pod(&pod).await.unwrap();
}

//! The real Kubernetes client against the streaming server: `kubectl exec`
//! and `kubectl port-forward` (client-go's SPDY and WebSocket executors) talk
//! to a fake API server written here, which answers discovery and the pod GET
//! and proxies the upgrade requests byte for byte to a fresh streaming URL,
//! the way the API server and kubelet do. Skipped when kubectl is missing.

mod streaming_support;

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use berth_proto::v1::{AttachRequest, ExecRequest, PortForwardRequest};
use berth_shim::streaming::StreamingServer;
use bytes::BytesMut;
use streaming_support::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn kubectl_available() -> bool {
    let ok = std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIP: kubectl not installed");
    }
    ok
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fn query(target: &str) -> Vec<(String, String)> {
    target
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (unescape(k), unescape(v))
        })
        .collect()
}

const POD: &str = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"pod1","namespace":"default","uid":"u1"},"spec":{"containers":[{"name":"c1","image":"x"}]},"status":{"phase":"Running"}}"#;
const API: &str = r#"{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":"127.0.0.1"}]}"#;
const APIS: &str = r#"{"kind":"APIGroupList","apiVersion":"v1","groups":[]}"#;
const API_V1: &str = r#"{"kind":"APIResourceList","groupVersion":"v1","resources":[{"name":"pods","singularName":"pod","namespaced":true,"kind":"Pod","verbs":["get","list"],"shortNames":["po"]},{"name":"pods/exec","singularName":"","namespaced":true,"kind":"PodExecOptions","verbs":["create","get"]},{"name":"pods/attach","singularName":"","namespaced":true,"kind":"PodAttachOptions","verbs":["create","get"]},{"name":"pods/portforward","singularName":"","namespaced":true,"kind":"PodPortForwardOptions","verbs":["create","get"]}]}"#;

/// Serves one client connection of the fake API server.
async fn api_conn(mut c: TcpStream, srv: Arc<StreamingServer>, seen: Upgrades) {
    let mut buf = BytesMut::new();
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            match c.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        let head = String::from_utf8(buf.split_to(end + 4).to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let mut req_line = lines.next().unwrap().split(' ');
        let (method, target) = (req_line.next().unwrap(), req_line.next().unwrap());
        let path = target.split('?').next().unwrap();
        let body = match path {
            "/api" => Some(API),
            "/apis" => Some(APIS),
            "/api/v1" => Some(API_V1),
            "/api/v1/namespaces/default/pods/pod1" => Some(POD),
            _ => None,
        };
        if let Some(b) = body {
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            );
            c.write_all(resp.as_bytes()).await.unwrap();
            continue;
        }
        let q = query(target);
        let flag = |k: &str| q.iter().any(|(n, v)| n == k && v == "true");
        let url = if path.ends_with("/exec") {
            srv.exec_url(&ExecRequest {
                container_id: "c1".into(),
                cmd: q
                    .iter()
                    .filter(|(k, _)| k == "command")
                    .map(|(_, v)| v.clone())
                    .collect(),
                tty: flag("tty"),
                stdin: flag("stdin"),
                stdout: flag("stdout"),
                stderr: flag("stderr"),
                ..Default::default()
            })
        } else if path.ends_with("/attach") {
            srv.attach_url(&AttachRequest {
                container_id: "c1".into(),
                tty: flag("tty"),
                stdin: flag("stdin"),
                stdout: flag("stdout"),
                stderr: flag("stderr"),
                ..Default::default()
            })
        } else if path.ends_with("/portforward") {
            srv.port_forward_url(&PortForwardRequest {
                pod_sandbox_id: "pod1".into(),
                port: q
                    .iter()
                    .filter(|(k, _)| k == "ports")
                    .map(|(_, v)| v.parse().unwrap())
                    .collect(),
            })
        } else {
            c.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                .await
                .unwrap();
            continue;
        }
        .unwrap();
        // Proxy the upgrade to the streaming URL, like kubelet does.
        let upgrade = head.split("\r\n").find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("upgrade:")
                .map(|v| v.trim().to_string())
        });
        seen.lock().unwrap().push(upgrade.unwrap_or_default());
        let (host, new_path) = split_url(&url);
        let mut up = TcpStream::connect(&host).await.unwrap();
        let mut fwd = format!("{method} {new_path} HTTP/1.1\r\n");
        for l in lines.filter(|l| !l.is_empty()) {
            if l.to_ascii_lowercase().starts_with("host:") {
                fwd.push_str(&format!("Host: {host}\r\n"));
            } else {
                fwd.push_str(l);
                fwd.push_str("\r\n");
            }
        }
        fwd.push_str("\r\n");
        up.write_all(fwd.as_bytes()).await.unwrap();
        up.write_all(&buf).await.unwrap();
        let _ = tokio::io::copy_bidirectional(&mut c, &mut up).await;
        return;
    }
}

/// The `Upgrade` header of every proxied request, to prove which transport ran.
type Upgrades = Arc<std::sync::Mutex<Vec<String>>>;

async fn fake_apiserver(srv: Arc<StreamingServer>) -> (String, Upgrades) {
    let seen = Upgrades::default();
    let seen2 = seen.clone();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (c, _) = l.accept().await.unwrap();
            tokio::spawn(api_conn(c, srv.clone(), seen2.clone()));
        }
    });
    (format!("http://{addr}"), seen)
}

async fn kubectl(api: &str, websockets: bool, args: &[&str], stdin: &[u8]) -> std::process::Output {
    let ws = if websockets { "true" } else { "false" };
    let mut child = tokio::process::Command::new("kubectl")
        .env("KUBECONFIG", "/dev/null")
        .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", ws)
        .arg(format!("--server={api}"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut i = child.stdin.take().unwrap();
    i.write_all(stdin).await.unwrap();
    drop(i);
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("kubectl hung")
        .unwrap()
}

#[tokio::test]
async fn kubectl_exec_over_spdy_and_websocket() {
    if !kubectl_available() {
        return;
    }
    let (srv, _rt) = server(60).await;
    let (api, seen) = fake_apiserver(Arc::new(srv)).await;
    for websockets in [false, true] {
        seen.lock().unwrap().clear();
        let out = kubectl(
            &api,
            websockets,
            &[
                "exec",
                "pod1",
                "--",
                "sh",
                "-c",
                "echo out; echo err >&2; exit 3",
            ],
            b"",
        )
        .await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(3),
            "websockets={websockets}: {stderr}"
        );
        assert_eq!(out.stdout, b"out\n", "websockets={websockets}");
        assert!(
            stderr.starts_with("err\n"),
            "websockets={websockets}: {stderr}"
        );

        let big: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
        let out = kubectl(
            &api,
            websockets,
            &["exec", "-i", "pod1", "--", "sh", "-c", "cat; echo end"],
            big.as_bytes(),
        )
        .await;
        assert!(
            out.status.success(),
            "websockets={websockets}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{big}end\n"),
            "websockets={websockets}"
        );
        let want = if websockets { "websocket" } else { "spdy/3.1" };
        assert_eq!(*seen.lock().unwrap(), vec![want.to_string(); 2]);
    }
}

#[tokio::test]
async fn kubectl_port_forward_over_spdy() {
    if !kubectl_available() {
        return;
    }
    let (srv, rt) = server(60).await;
    let (api, seen) = fake_apiserver(Arc::new(srv)).await;
    // Echo server standing in for the pod's port.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let local = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tokio::process::Command::new("kubectl")
        .env("KUBECONFIG", "/dev/null")
        .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")
        .arg(format!("--server={api}"))
        .args([
            "port-forward",
            "pod1",
            &format!("{local}:{target}"),
            "--address",
            "127.0.0.1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("kubectl port-forward did not start")
        .unwrap()
        .unwrap_or_default();
    assert!(line.contains("Forwarding from"), "{line}");
    for round in 0..2 {
        let mut s = TcpStream::connect(("127.0.0.1", local)).await.unwrap();
        let msg = format!("hello through kubectl {round}");
        s.write_all(msg.as_bytes()).await.unwrap();
        let mut got = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(20), s.read_exact(&mut got))
            .await
            .expect("no echo")
            .unwrap();
        assert_eq!(got, msg.as_bytes());
    }
    assert!(rt
        .forwards
        .lock()
        .unwrap()
        .iter()
        .all(|(pod, port)| pod == "pod1" && *port == target));
    assert_eq!(rt.forwards.lock().unwrap().len(), 2);
    assert_eq!(*seen.lock().unwrap(), vec!["spdy/3.1".to_string()]);
    child.kill().await.unwrap();
}

#[tokio::test]
async fn kubectl_exec_with_a_terminal_sends_its_size() {
    if !kubectl_available() {
        return;
    }
    let has_script = std::process::Command::new("script")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_script {
        eprintln!("SKIP: script(1) from util-linux is needed to give kubectl a terminal");
        return;
    }
    let (srv, _rt) = server(60).await;
    let (api, seen) = fake_apiserver(Arc::new(srv)).await;
    for websockets in [false, true] {
        seen.lock().unwrap().clear();
        // script(1) gives kubectl a terminal of a known size; kubectl sends it
        // on the resize stream and the remote `stty size` must see it.
        let inner = format!(
            "stty rows 33 cols 77; KUBECONFIG=/dev/null KUBECTL_REMOTE_COMMAND_WEBSOCKETS={websockets} \
             kubectl --server={api} exec -it pod1 -- sh -c 'sleep 0.5; stty size'"
        );
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::process::Command::new("script")
                .args(["-qec", &inner, "/dev/null"])
                .stdin(Stdio::null())
                .output(),
        )
        .await
        .expect("kubectl hung")
        .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "websockets={websockets}: {text}");
        assert!(text.contains("33 77"), "websockets={websockets}: {text:?}");
        let want = if websockets { "websocket" } else { "spdy/3.1" };
        assert_eq!(*seen.lock().unwrap(), vec![want.to_string()]);
    }
}

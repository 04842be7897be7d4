//! The real Kubernetes client against the streaming server: Debian's
//! `kubectl` (client-go's SPDY executors; Debian 12 ships 1.20, which has no
//! WebSocket remote command) runs `exec`, `attach` and `port-forward` against
//! a fake API server written here, which answers discovery and the pod GET and
//! proxies the upgrade requests byte for byte to a fresh streaming URL, the
//! way the API server and kubelet do. kubectl is the independent oracle (our
//! own client shares the frame code with the server), so its absence fails.
//! The same client against the real berthd: integration/tests/streaming_kubectl_e2e.rs.

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

/// Debian's kubectl (package `kubernetes-client`): where dpkg put it, which
/// is beside /usr/bin/kubectl when another package owns that path
/// (scripts/install-deps.sh diverts it).
fn kubectl_path() -> String {
    let out = std::process::Command::new("dpkg-query")
        .args(["-L", "kubernetes-client"])
        .output()
        .expect("dpkg-query");
    assert!(
        out.status.success(),
        "Debian's kubernetes-client is not installed (scripts/install-deps.sh installs it)"
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines().peekable();
    while let Some(l) = lines.next() {
        if l == "/usr/bin/kubectl" {
            let path = match lines.peek().and_then(|n| n.split_once(" to: ")) {
                Some((by, to)) if by.starts_with("diverted by") => to.to_string(),
                _ => l.to_string(),
            };
            assert!(std::path::Path::new(&path).is_file(), "{path} is missing");
            return path;
        }
    }
    panic!("kubernetes-client has no /usr/bin/kubectl")
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

/// Pod `pod1`'s container has no stdin; `tty1` is a terminal container with stdin.
const POD: &str = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"pod1","namespace":"default","uid":"u1"},"spec":{"containers":[{"name":"c1","image":"x","stdin":true}]},"status":{"phase":"Running"}}"#;
const TTY_POD: &str = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"tty1","namespace":"default","uid":"u2"},"spec":{"containers":[{"name":"c1","image":"x","stdin":true,"tty":true}]},"status":{"phase":"Running"}}"#;
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
            "/api/v1/namespaces/default/pods/tty1" => Some(TTY_POD),
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

async fn kubectl(api: &str, args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut child = tokio::process::Command::new(kubectl_path())
        .env("KUBECONFIG", "/dev/null")
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
async fn kubectl_exec_over_spdy() {
    let (srv, _rt) = server(60).await;
    let (api, seen) = fake_apiserver(Arc::new(srv)).await;
    let out = kubectl(
        &api,
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
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert_eq!(out.stdout, b"out\n");
    assert!(stderr.starts_with("err\n"), "{stderr}");

    let big: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
    let out = kubectl(
        &api,
        &["exec", "-i", "pod1", "--", "sh", "-c", "cat; echo end"],
        big.as_bytes(),
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{big}end\n"));
    assert_eq!(*seen.lock().unwrap(), vec!["spdy/3.1".to_string(); 2]);
}

#[tokio::test]
async fn kubectl_attach_with_stdin_over_spdy() {
    let (srv, _rt) = server(60).await;
    let (api, seen) = fake_apiserver(Arc::new(srv)).await;
    // The fake main process: "echo attached; cat; exit 7".
    let out = kubectl(&api, &["attach", "-i", "pod1"], b"typed\n").await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(out.stdout, b"attached\ntyped\n", "{stderr}");
    assert_eq!(*seen.lock().unwrap(), vec!["spdy/3.1".to_string()]);
}

#[tokio::test]
async fn kubectl_port_forward_over_spdy() {
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
    let mut child = tokio::process::Command::new(kubectl_path())
        .env("KUBECONFIG", "/dev/null")
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

/// kubectl under script(1), which gives it a terminal of 33x77; returns
/// what the terminal showed.
async fn kubectl_on_a_terminal(api: &str, args: &str) -> Vec<u8> {
    let inner = format!(
        "stty rows 33 cols 77; KUBECONFIG=/dev/null {} --server={api} {args}",
        kubectl_path()
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
    assert!(
        out.status.success(),
        "{:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    out.stdout
}

#[tokio::test]
async fn kubectl_exec_with_a_terminal_sends_its_size_and_nothing_else() {
    let (srv, _rt) = server(60).await;
    let (api, seen) = fake_apiserver(Arc::new(srv)).await;
    // kubectl sends the terminal's size on the resize stream and the remote
    // `stty size` must see it; the terminal shows exactly what it printed.
    let out = kubectl_on_a_terminal(&api, "exec -it pod1 -- sh -c 'sleep 0.5; stty size'").await;
    // The test double runs the command on berthd's pty, which is raw (the
    // real exec helper puts a cooked pty of the container in between), so
    // no \r is added.
    assert_eq!(out, b"33 77\n", "{:?}", String::from_utf8_lossy(&out));
    assert_eq!(*seen.lock().unwrap(), vec!["spdy/3.1".to_string()]);
}

//! The real Kubernetes client against the streaming server: Debian's
//! `kubectl` (client-go's SPDY executors; Debian 12 ships 1.20, which has no
//! WebSocket remote command) runs `exec`, `attach` and `port-forward` against
//! a fake API server written here, which answers discovery and the pod GET and
//! proxies the upgrade requests byte for byte to a fresh streaming URL, the
//! way the API server and kubelet do. kubectl is the independent oracle (our
//! own client shares the frame code with the server), so its absence fails.
//! The same client against the real berthd: integration/tests/streaming_kubectl_e2e.rs.

mod streaming_support;

// The stand-in API server and the kubectl lookup are the integration
// harness's own (integration/tests/streaming_kubectl_e2e.rs puts berthd
// behind them); compiled in here from its source because the shim's tests
// do not depend on the integration crate.
#[path = "../../integration/src/kubectl.rs"]
#[allow(dead_code)]
mod kubectl;

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use berth_shim::streaming::StreamingServer;
use kubectl::{debian_kubectl, CriStreamRequest, FakeApiServer, PodSpec, StreamRequest, UrlSource};
use streaming_support::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The stand-in API server in front of `srv`: pod `pod1` (its container has
/// stdin) and `tty1` (stdin and a terminal); every stream goes to container
/// `c1` or pod `pod1` of the test double.
async fn fake_apiserver(srv: Arc<StreamingServer>) -> FakeApiServer {
    let source: UrlSource = Arc::new(move |req: StreamRequest| {
        let url = match req.into_cri("c1", "pod1") {
            CriStreamRequest::Exec(r) => srv.exec_url(&r),
            CriStreamRequest::Attach(r) => srv.attach_url(&r),
            CriStreamRequest::PortForward(r) => srv.port_forward_url(&r),
        };
        Box::pin(std::future::ready(url.unwrap()))
    });
    let api = FakeApiServer::start(source).await.unwrap();
    api.add_pod(
        "pod1",
        PodSpec {
            stdin: true,
            tty: false,
        },
    );
    api.add_pod(
        "tty1",
        PodSpec {
            stdin: true,
            tty: true,
        },
    );
    api
}

/// Debian's kubectl, the oracle: its absence fails the test.
fn kubectl_path() -> std::path::PathBuf {
    debian_kubectl().unwrap_or_else(|why| panic!("{why}"))
}

/// `kubectl args` against `api` with `stdin` written to it.
async fn kubectl(api: &FakeApiServer, args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut child = api
        .kubectl(&kubectl_path())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
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
    let api = fake_apiserver(Arc::new(srv)).await;
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
    assert_eq!(
        *api.upgrades.lock().unwrap(),
        vec!["spdy/3.1".to_string(); 2]
    );
}

#[tokio::test]
async fn kubectl_attach_with_stdin_over_spdy() {
    let (srv, _rt) = server(60).await;
    let api = fake_apiserver(Arc::new(srv)).await;
    // The fake main process: "echo attached; cat; exit 7".
    let out = kubectl(&api, &["attach", "-i", "pod1"], b"typed\n").await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(out.stdout, b"attached\ntyped\n", "{stderr}");
    assert_eq!(*api.upgrades.lock().unwrap(), vec!["spdy/3.1".to_string()]);
}

#[tokio::test]
async fn kubectl_port_forward_over_spdy() {
    let (srv, rt) = server(60).await;
    let api = fake_apiserver(Arc::new(srv)).await;
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
    let mut child = api
        .kubectl(&kubectl_path())
        .args([
            "port-forward",
            "pod1",
            &format!("{local}:{target}"),
            "--address",
            "127.0.0.1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
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
    assert_eq!(*api.upgrades.lock().unwrap(), vec!["spdy/3.1".to_string()]);
    child.kill().await.unwrap();
}

/// kubectl under script(1), which gives it a terminal of 33x77; returns
/// what the terminal showed.
async fn kubectl_on_a_terminal(api: &FakeApiServer, args: &str) -> Vec<u8> {
    let inner = format!(
        "stty rows 33 cols 77; KUBECONFIG=/dev/null {} --server={} {args}",
        kubectl_path().display(),
        api.url
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
    let api = fake_apiserver(Arc::new(srv)).await;
    // kubectl sends the terminal's size on the resize stream and the remote
    // `stty size` must see it; the terminal shows exactly what it printed.
    let command = format!("exec -it pod1 -- sh -c '{AFTER_RESIZE_STTY_SIZE}'");
    let out = kubectl_on_a_terminal(&api, &command).await;
    // The test double runs the command on berthd's pty, which is raw (the
    // real exec helper puts a cooked pty of the container in between), so
    // no \r is added.
    assert_eq!(out, b"33 77\n", "{:?}", String::from_utf8_lossy(&out));
    assert_eq!(*api.upgrades.lock().unwrap(), vec!["spdy/3.1".to_string()]);
}

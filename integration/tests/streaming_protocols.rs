//! Exec, attach and port-forward through the real berthd's streaming server
//! with berth's own Rust client, each over both SPDY/3.1 and WebSocket: exit
//! codes and separate stdout/stderr, an interactive tty with resizes, attach
//! to a running container, port-forward to an httpd in the pod (IPv4 and
//! IPv6 loopback), single-use tokens, the idle timeout, and a 10 MB stdout.

use std::time::{Duration, Instant};

use berth_integration::berthd::BerthdOptions;
use berth_integration::calls::{self, exec_url, port_forward_url};
use berth_integration::env::{container_config, TestEnv, TestEnvOptions};
use berth_integration::{skip, skip_if, wait};
use berth_proto::v1::*;
use berth_shim::streaming::client::{self, RemoteStdio, Transport};
use berth_shim::streaming::TermSize;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;

const BOTH: [Transport; 2] = [Transport::Spdy, Transport::WebSocket];

/// A running remote command whose stdin and stdout the test drives.
struct Session {
    stdin: Option<DuplexStream>,
    stdout: DuplexStream,
    resize: mpsc::Sender<TermSize>,
    seen: Vec<u8>,
    done: tokio::task::JoinHandle<berth_shim::error::Result<i32>>,
}

impl Session {
    fn start(url: String, transport: Transport, tty: bool, stderr: bool) -> Session {
        let (stdin, remote_in) = tokio::io::duplex(64 * 1024);
        let (remote_out, stdout) = tokio::io::duplex(64 * 1024);
        let (resize, sizes) = mpsc::channel(4);
        let stdio = RemoteStdio {
            stdin: Some(Box::new(remote_in)),
            stdout: Some(Box::new(remote_out)),
            stderr: stderr.then(|| Box::new(tokio::io::sink()) as _),
            tty,
            resize: tty.then_some(sizes),
        };
        let done =
            tokio::spawn(async move { client::remote_command(&url, transport, stdio).await });
        Session {
            stdin: Some(stdin),
            stdout,
            resize,
            seen: Vec::new(),
            done,
        }
    }

    async fn send(&mut self, text: &str) {
        let w = self.stdin.as_mut().unwrap();
        w.write_all(text.as_bytes()).await.unwrap();
        w.flush().await.unwrap();
    }

    /// Reads output until it contains `want` (after what earlier calls
    /// consumed); returns the output before it.
    async fn expect(&mut self, want: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buf = [0u8; 4096];
        loop {
            if let Some(i) = find(&self.seen, want.as_bytes()) {
                let before = String::from_utf8_lossy(&self.seen[..i]).into_owned();
                self.seen.drain(..i + want.len());
                return before;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let n = tokio::time::timeout(left, self.stdout.read(&mut buf))
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "timed out waiting for {want:?}; seen {:?}",
                        String::from_utf8_lossy(&self.seen)
                    )
                })
                .unwrap();
            assert!(
                n > 0,
                "output ended before {want:?}; seen {:?}",
                String::from_utf8_lossy(&self.seen)
            );
            self.seen.extend_from_slice(&buf[..n]);
        }
    }

    async fn finish(self) -> berth_shim::error::Result<i32> {
        // Keep draining stdout so the session is never blocked on it.
        let mut out = self.stdout;
        tokio::spawn(async move {
            let mut sink = tokio::io::sink();
            let _ = tokio::io::copy(&mut out, &mut sink).await;
        });
        tokio::time::timeout(Duration::from_secs(20), self.done)
            .await
            .expect("session did not end")
            .unwrap()
    }
}

/// `ps` in the container, through ExecSync.
async fn ps(env: &mut TestEnv, cid: &str) -> String {
    let r = env
        .cri
        .runtime
        .exec_sync(ExecSyncRequest {
            container_id: cid.into(),
            cmd: vec!["ps".into()],
            timeout: 10,
        })
        .await
        .unwrap()
        .into_inner();
    String::from_utf8_lossy(&r.stdout).into_owned()
}

/// Polls `ps` until `pred` holds, for at most 10 s.
async fn wait_ps(env: &mut TestEnv, cid: &str, what: &str, pred: impl Fn(&str) -> bool) {
    wait::until(what, Duration::from_secs(10), async || {
        let out = ps(env, cid).await;
        wait::check(pred(&out), out)
    })
    .await
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test]
async fn exec_streams_exit_codes_tty_resize_and_10mb_over_spdy_and_websocket() {
    skip_if!(skip::no_pod_env());
    let mut env = TestEnv::start_for_pods().await.unwrap();
    let (pod, cid) = env
        .run_busybox_pod("exec", "exec sleep 3600", false)
        .await
        .unwrap();
    for transport in BOTH {
        // Separate streams and the exit code.
        let url = exec_url(
            &mut env.cri,
            &cid,
            &["sh", "-c", "echo out; echo err >&2; exit 3"],
            false,
            false,
        )
        .await;
        let r = client::run_and_collect(&url, transport, None, true, true, false)
            .await
            .unwrap();
        assert_eq!(r.stdout, b"out\n", "{transport:?}");
        assert_eq!(r.stderr, b"err\n", "{transport:?}");
        assert_eq!(r.exit_code, 3, "{transport:?}");

        // stdin reaches the command and its EOF ends it.
        let url = exec_url(
            &mut env.cri,
            &cid,
            &["sh", "-c", "read x; echo got:$x"],
            true,
            false,
        )
        .await;
        let r = client::run_and_collect(&url, transport, Some(b"hi\n".to_vec()), true, true, false)
            .await
            .unwrap();
        assert_eq!((r.stdout.as_slice(), r.exit_code), (&b"got:hi\n"[..], 0));
        let url = exec_url(&mut env.cri, &cid, &["cat"], true, false).await;
        let r = client::run_and_collect(&url, transport, Some(b"a\nb".to_vec()), true, true, false)
            .await
            .unwrap();
        assert_eq!(r.stdout, b"a\nb", "{transport:?}: stdin EOF must reach cat");

        // An empty stdin closes at once; a large one arrives intact.
        let url = exec_url(&mut env.cri, &cid, &["cat"], true, false).await;
        let r = client::run_and_collect(&url, transport, Some(Vec::new()), true, true, false)
            .await
            .unwrap();
        assert_eq!((r.stdout.len(), r.exit_code), (0, 0), "{transport:?}");
        let url = exec_url(&mut env.cri, &cid, &["wc", "-c"], true, false).await;
        let big = vec![b'x'; 5_000_000];
        let r = client::run_and_collect(&url, transport, Some(big), true, true, false)
            .await
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&r.stdout).trim(),
            "5000000",
            "{transport:?}"
        );

        // A command that cannot start is an error, not exit code 0.
        let url = exec_url(&mut env.cri, &cid, &["/no/such/binary"], false, false).await;
        let e = client::run_and_collect(&url, transport, None, true, true, false).await;
        match e {
            Err(e) => assert!(e.to_string().contains("no/such/binary"), "{e}"),
            Ok(r) => assert_ne!(r.exit_code, 0, "{transport:?}: {r:?}"),
        }

        // An interactive shell on a tty: the size follows resizes.
        let url = exec_url(&mut env.cri, &cid, &["sh"], true, true).await;
        let mut s = Session::start(url, transport, true, false);
        s.resize
            .send(TermSize {
                width: 80,
                height: 24,
            })
            .await
            .unwrap();
        s.send("echo mark-$((6*7))\n").await;
        s.expect("mark-42").await;
        s.send("stty size\n").await;
        s.expect("24 80").await;
        s.resize
            .send(TermSize {
                width: 132,
                height: 50,
            })
            .await
            .unwrap();
        // The resize travels on its own stream: poll until the shell sees it.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            s.send("stty size; echo end-$((1+1))\n").await;
            let before = s.expect("end-2").await;
            if before.contains("50 132") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{transport:?}: size not applied: {before:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        s.send("exit 5\n").await;
        assert_eq!(s.finish().await.unwrap(), 5, "{transport:?}");

        // A client that goes away (its future dropped) ends the exec'd process.
        let url = exec_url(&mut env.cri, &cid, &["sleep", "4321"], true, false).await;
        let s = Session::start(url, transport, false, true);
        wait_ps(&mut env, &cid, "exec never started", |o| {
            o.contains("sleep 4321")
        })
        .await;
        s.done.abort();
        drop(s);
        wait_ps(&mut env, &cid, "exec outlived its client", |o| {
            !o.contains("sleep 4321")
        })
        .await;

        // Throughput sanity: 10 MB of stdout arrive intact.
        let url = exec_url(
            &mut env.cri,
            &cid,
            &["head", "-c", "10000000", "/dev/zero"],
            false,
            false,
        )
        .await;
        let start = Instant::now();
        let r = client::run_and_collect(&url, transport, None, true, true, false)
            .await
            .unwrap();
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(r.stdout.len(), 10_000_000, "{transport:?}");
        assert!(r.stdout.iter().all(|&b| b == 0));
        assert_eq!(r.exit_code, 0);
        println!(
            "exec 10 MB stdout over {transport:?}: {secs:.3}s ({:.1} MB/s)",
            10.0 / secs
        );
    }
    env.remove_pod(&pod).await.unwrap();
}

#[tokio::test]
async fn attach_sees_output_and_feeds_stdin_over_spdy_and_websocket() {
    skip_if!(skip::no_pod_env());
    let mut env = TestEnv::start_for_pods().await.unwrap();
    let script = r#"echo ready; while read l; do [ "$l" = quit ] && exit 0; echo got:$l; echo err:$l >&2; done"#;
    let mut pods = Vec::new();
    for transport in BOTH {
        let name = format!("attach-{}", format!("{transport:?}").to_lowercase());
        let (pod, cid) = env.run_busybox_pod(&name, script, true).await.unwrap();
        pods.push(pod);
        let url = calls::attach_url(&mut env.cri, &cid, true, false).await;
        let mut s = Session::start(url, transport, false, true);
        s.send("hello\n").await;
        s.expect("got:hello").await;
        s.send("again\n").await;
        s.expect("got:again").await;
        // The container's main process ending ends the attach.
        s.send("quit\n").await;
        assert_eq!(s.finish().await.unwrap(), 0, "{transport:?}");
    }
    for pod in pods {
        env.remove_pod(&pod).await.unwrap();
    }
}

#[tokio::test]
async fn attach_to_a_tty_container_follows_resizes_over_spdy_and_websocket() {
    skip_if!(skip::no_pod_env());
    let mut env = TestEnv::start_for_pods().await.unwrap();
    let mut pods = Vec::new();
    for transport in BOTH {
        let name = format!("attach-tty-{}", format!("{transport:?}").to_lowercase());
        let config = env.pod_config(&name);
        let pod = env.run_pod(&config).await.unwrap();
        pods.push(pod.clone());
        let mut c = container_config(&name, &env.image("busybox"), &["sh"]);
        c.stdin = true;
        c.tty = true;
        let cid = env.run_container(&pod, &config, c).await.unwrap();
        let url = calls::attach_url(&mut env.cri, &cid, true, true).await;
        let mut s = Session::start(url, transport, true, false);
        s.resize
            .send(TermSize {
                width: 77,
                height: 33,
            })
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        for i in 0.. {
            s.send(&format!("echo m{i}-$((2+2)): $(stty size)\n")).await;
            s.expect(&format!("m{i}-4: ")).await;
            let rest = s.expect("\n").await;
            if rest.contains("33 77") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{transport:?}: resize not applied: {rest:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        s.send("exit\n").await;
        assert_eq!(s.finish().await.unwrap(), 0, "{transport:?}");
    }
    for pod in pods {
        env.remove_pod(&pod).await.unwrap();
    }
}

/// Forwards one request over `transport` and returns the raw HTTP response.
async fn http_get(url: &str, transport: Transport, port: u16) -> berth_shim::error::Result<String> {
    let (mut local, remote) = tokio::io::duplex(64 * 1024);
    let url = url.to_string();
    let fwd =
        tokio::spawn(async move { client::port_forward(&url, transport, port, remote).await });
    local
        .write_all(b"GET /index.html HTTP/1.0\r\nHost: pod\r\n\r\n")
        .await
        .unwrap();
    let mut resp = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), local.read_to_end(&mut resp)).await;
    let r = tokio::time::timeout(Duration::from_secs(20), fwd)
        .await
        .expect("port-forward did not end")
        .unwrap();
    read.expect("response did not end").unwrap();
    r.map(|_| String::from_utf8_lossy(&resp).into_owned())
}

#[tokio::test]
async fn port_forward_reaches_httpd_in_the_pod_over_spdy_and_websocket() {
    skip_if!(skip::no_pod_env());
    let mut env = TestEnv::start_for_pods().await.unwrap();
    // One httpd on IPv4 (all addresses), one only on the IPv6 loopback, when
    // the pod's loopback has IPv6.
    let script = "mkdir -p /www && echo hello-from-pod > /www/index.html && \
        (nc -ll -p 9000 -e wc -c &) && \
        httpd -p [::1]:8081 -h /www; exec httpd -f -p 8080 -h /www";
    let (pod, cid) = env.run_busybox_pod("pf", script, false).await.unwrap();
    let ipv6_url = exec_url(
        &mut env.cri,
        &cid,
        &["sh", "-c", "cat /proc/sys/net/ipv6/conf/lo/disable_ipv6"],
        false,
        false,
    )
    .await;
    let ipv6 = client::run_and_collect(&ipv6_url, Transport::Spdy, None, true, true, false)
        .await
        .map(|r| r.stdout == b"0\n")
        .unwrap_or(false);
    for transport in BOTH {
        // httpd may still be starting: retry a refused connection briefly.
        let what = format!("{transport:?}: an answer through the forward");
        let resp = wait::until(&what, Duration::from_secs(15), async || {
            let url = port_forward_url(&mut env.cri, &pod, 8080).await;
            match http_get(&url, transport, 8080).await {
                Ok(r) if !r.is_empty() => Ok(r),
                other => Err(other),
            }
        })
        .await;
        assert!(
            resp.starts_with("HTTP/1.1 200 OK\r\n"),
            "{transport:?}: {resp}"
        );
        assert!(resp.ends_with("hello-from-pod\n"), "{transport:?}: {resp}");

        if ipv6 {
            let url = port_forward_url(&mut env.cri, &pod, 8081).await;
            let resp = http_get(&url, transport, 8081).await.unwrap();
            assert!(
                resp.ends_with("hello-from-pod\n"),
                "{transport:?} ipv6: {resp}"
            );
        } else {
            println!("pod loopback has no IPv6: [::1] forward not checked");
        }

        // An upload and its half-close reach the pod (SPDY only: a v4
        // WebSocket channel cannot be half-closed).
        if transport == Transport::Spdy {
            let url = port_forward_url(&mut env.cri, &pod, 9000).await;
            let (mut local, remote) = tokio::io::duplex(64 * 1024);
            let fwd = tokio::spawn(async move {
                client::port_forward(&url, Transport::Spdy, 9000, remote).await
            });
            local.write_all(&vec![b'y'; 3_000_000]).await.unwrap();
            local.shutdown().await.unwrap();
            let mut resp = String::new();
            tokio::time::timeout(Duration::from_secs(20), local.read_to_string(&mut resp))
                .await
                .expect("wc did not answer")
                .unwrap();
            assert_eq!(resp.trim(), "3000000");
            fwd.await.unwrap().unwrap();
        }

        // Nothing listening: the server's error comes back as an error.
        let url = port_forward_url(&mut env.cri, &pod, 8099).await;
        let e = http_get(&url, transport, 8099).await.unwrap_err();
        assert!(e.to_string().contains("8099"), "{transport:?}: {e}");
    }
    env.remove_pod(&pod).await.unwrap();
}

#[tokio::test]
async fn used_tokens_are_refused_and_idle_streams_are_closed() {
    skip_if!(skip::no_pod_env());
    let mut env = TestEnv::start_with(TestEnvOptions {
        berthd: BerthdOptions::default().config("[streaming]\nidle_timeout_secs = 2\n"),
        ..TestEnvOptions::for_pods()
    })
    .await
    .unwrap();
    let (pod, cid) = env
        .run_busybox_pod("tokens", "exec sleep 3600", false)
        .await
        .unwrap();
    for transport in BOTH {
        let url = exec_url(&mut env.cri, &cid, &["true"], false, false).await;
        let r = client::run_and_collect(&url, transport, None, true, true, false)
            .await
            .unwrap();
        assert_eq!(r.exit_code, 0);
        let e = client::run_and_collect(&url, transport, None, true, true, false)
            .await
            .unwrap_err();
        assert!(
            matches!(e, berth_shim::error::Error::NotFound(_)),
            "{transport:?}: {e}"
        );
        assert!(e.to_string().contains("404"), "{e}");

        // A session with no traffic is cut after the idle timeout (2 s), and
        // the client reports the missing status as an error.
        let url = exec_url(&mut env.cri, &cid, &["sleep", "60"], true, false).await;
        let s = Session::start(url, transport, false, true);
        let start = Instant::now();
        let r = s.finish().await;
        let idle = start.elapsed();
        assert!(r.is_err(), "{transport:?}: {r:?}");
        assert!(
            idle >= Duration::from_millis(1500) && idle < Duration::from_secs(10),
            "{transport:?}: closed after {idle:?}"
        );
    }
    env.remove_pod(&pod).await.unwrap();
}

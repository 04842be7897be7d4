//! Debian's kubectl against the real berthd: `kubectl attach` (stdin, with and
//! without a terminal), `kubectl exec -it` (the exact bytes of the terminal),
//! `kubectl exec -i` with a large stdin, and `kubectl port-forward`, through
//! a fake API server that gets each streaming URL from berthd over CRI and
//! proxies kubectl's SPDY upgrade to it (integration/src/kubectl.rs). The
//! containers are real (berth-monitor, its attach socket, the exec helper).
//! kubectl missing is a failure: it is the independent client.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_integration::client::Cri;
use berth_integration::env::{container_config, TestEnv};
use berth_integration::kubectl::{
    debian_kubectl, CriStreamRequest, FakeApiServer, PodSpec, StreamRequest,
};
use berth_integration::{skip, skip_if, wait};
use berth_proto::v1::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// kubectl pod name -> (CRI pod sandbox id, CRI container id).
type Pods = Arc<std::sync::Mutex<HashMap<String, (String, String)>>>;

struct Env {
    base: TestEnv,
    pod: String,
    pod_config: PodSandboxConfig,
    api: FakeApiServer,
    pods: Pods,
    kubectl: std::path::PathBuf,
}

async fn env(name: &str) -> Env {
    let kubectl = debian_kubectl().unwrap_or_else(|e| panic!("{e}"));
    let mut base = TestEnv::start_for_pods().await.unwrap();
    let pod_config = base.pod_config(name);
    let pod = base.run_pod(&pod_config).await.unwrap();
    let pods = Pods::default();
    let (cri, p) = (base.cri.clone(), pods.clone());
    let api = FakeApiServer::start(Arc::new(move |req| {
        let (mut cri, pods): (Cri, Pods) = (cri.clone(), p.clone());
        Box::pin(async move { mint(&mut cri, &pods, req).await })
    }))
    .await
    .unwrap();
    Env {
        base,
        pod,
        pod_config,
        api,
        pods,
        kubectl,
    }
}

/// What kubelet does with the API server's request: the matching CRI call.
async fn mint(cri: &mut Cri, pods: &Pods, req: StreamRequest) -> String {
    let (pod_id, container_id) = pods.lock().unwrap().get(req.pod()).cloned().unwrap();
    match req.into_cri(&container_id, &pod_id) {
        CriStreamRequest::Exec(r) => cri.runtime.exec(r).await.unwrap().into_inner().url,
        CriStreamRequest::Attach(r) => cri.runtime.attach(r).await.unwrap().into_inner().url,
        CriStreamRequest::PortForward(r) => {
            cri.runtime.port_forward(r).await.unwrap().into_inner().url
        }
    }
}

impl Env {
    /// Runs a busybox container `name` with `command` and makes it kubectl's pod `name`.
    async fn container(&mut self, name: &str, command: &[&str], spec: PodSpec) -> String {
        let mut c = container_config(name, &self.base.image("busybox"), command);
        c.stdin = spec.stdin;
        c.tty = spec.tty;
        let id = self
            .base
            .run_container(&self.pod, &self.pod_config, c)
            .await
            .unwrap();
        self.pods
            .lock()
            .unwrap()
            .insert(name.into(), (self.pod.clone(), id.clone()));
        self.api.add_pod(name, spec);
        id
    }

    async fn finish(mut self) {
        let pod = self.pod.clone();
        self.base.remove_pod(&pod).await.unwrap();
    }
}

/// kubectl (under script(1) when `terminal`, so it has a real terminal) with
/// its stdin and stdout piped to the test.
fn spawn(env: &Env, args: &[&str], terminal: bool) -> tokio::process::Child {
    let mut cmd = if terminal {
        let inner = format!(
            "stty rows 24 cols 80; exec env KUBECONFIG=/dev/null {} --server={} {}",
            env.kubectl.display(),
            env.api.url,
            args.join(" ")
        );
        let mut c = tokio::process::Command::new("script");
        c.args(["-qec", &inner, "/dev/null"]).kill_on_drop(true);
        c
    } else {
        let mut c = env.api.kubectl(&env.kubectl);
        c.args(args);
        c
    };
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Reads `r` into `seen` until it contains `want`, for at most 30 s.
async fn read_until(r: &mut (impl AsyncReadExt + Unpin), seen: &mut Vec<u8>, want: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 4096];
    while !seen.windows(want.len()).any(|w| w == want) {
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, r.read(&mut buf))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "timed out waiting for {:?}; seen {:?}",
                    String::from_utf8_lossy(want),
                    String::from_utf8_lossy(seen)
                )
            })
            .unwrap();
        assert!(
            n > 0,
            "output ended before {:?}; seen {:?}",
            String::from_utf8_lossy(want),
            String::from_utf8_lossy(seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
}

async fn wait(child: tokio::process::Child) -> std::process::Output {
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("kubectl did not end")
        .unwrap()
}

#[tokio::test]
async fn kubectl_attach_feeds_stdin_and_sees_output_without_a_terminal() {
    skip_if!(skip::no_pod_env());
    let mut env = env("kattach").await;
    let script =
        r#"while read l; do [ "$l" = quit ] && exit 0; echo got:$l; echo err:$l >&2; done"#;
    let stdin_only = PodSpec {
        stdin: true,
        tty: false,
    };
    env.container("pipes", &["sh", "-c", script], stdin_only)
        .await;
    let mut k = spawn(&env, &["attach", "-i", "pipes"], false);
    let mut stdin = k.stdin.take().unwrap();
    let mut stdout = k.stdout.take().unwrap();
    // Lines sent before the attach is up are held by kubectl, so the
    // container sees them all once it is.
    stdin.write_all(b"hello\n").await.unwrap();
    let mut seen = Vec::new();
    read_until(&mut stdout, &mut seen, b"got:hello\n").await;
    stdin.write_all(b"again\n").await.unwrap();
    read_until(&mut stdout, &mut seen, b"got:again\n").await;
    // The main process ending ends the attach, with success.
    stdin.write_all(b"quit\n").await.unwrap();
    drop(stdin);
    k.stdout = Some(stdout);
    let out = wait(k).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(seen, b"got:hello\ngot:again\n");
    assert!(stderr.contains("err:hello\nerr:again\n"), "{stderr}");
    env.finish().await;
}

#[tokio::test]
async fn kubectl_attach_to_a_terminal_container() {
    skip_if!(skip::no_pod_env());
    let mut env = env("kattachtty").await;
    let spec = PodSpec {
        stdin: true,
        tty: true,
    };
    env.container("tty", &["sh"], spec).await;
    let mut k = spawn(&env, &["attach", "-it", "tty"], true);
    let mut stdin = k.stdin.take().unwrap();
    let mut stdout = k.stdout.take().unwrap();
    let mut seen = Vec::new();
    // The shell's answer (not the echo of the command line) proves the
    // keys reached it and its output came back; a line typed before the
    // attach is up is echoed by the local terminal only, so repeat.
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in 0.. {
        stdin
            .write_all(format!("echo m{i}-$((6*7)) $(tty)\n").as_bytes())
            .await
            .unwrap();
        let want = format!("m{i}-42 /dev/pts/0");
        let r = tokio::time::timeout(
            Duration::from_secs(2),
            read_until(&mut stdout, &mut seen, want.as_bytes()),
        )
        .await;
        if r.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no answer from the shell: {:?}",
            String::from_utf8_lossy(&seen)
        );
    }
    stdin.write_all(b"exit 0\n").await.unwrap();
    k.stdout = Some(stdout);
    let out = wait(k).await;
    assert!(
        out.status.success(),
        "{:?}",
        String::from_utf8_lossy(&[seen, out.stdout].concat())
    );
    assert!(!seen.contains(&0), "{seen:?}");
    env.finish().await;
}

#[tokio::test]
async fn kubectl_exec_it_carries_exactly_the_terminal_bytes() {
    skip_if!(skip::no_pod_env());
    let mut env = env("kexecit").await;
    env.container("sleeper", &["sleep", "3600"], PodSpec::default())
        .await;
    let mut k = spawn(
        &env,
        &[
            "exec",
            "-it",
            "sleeper",
            "--",
            "sh",
            "-c",
            "'tty; printf x'",
        ],
        true,
    );
    // Kept open until kubectl is done: at the end of its input script(1)
    // types ^D, and a ^D typed before kubectl made its terminal raw becomes a
    // NUL byte there (the end-of-file mark of the canonical line) that
    // kubectl sends on; the container's terminal echoes it as "^@".
    let stdin = k.stdin.take();
    let out = wait(k).await;
    drop(stdin);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text:?}");
    // The terminal maps \n to \r\n; nothing else may be added.
    assert_eq!(out.stdout, b"/dev/pts/0\r\nx", "{text:?}");
    env.finish().await;
}

#[tokio::test]
async fn kubectl_exec_i_pipes_a_large_stdin_through_cat() {
    skip_if!(skip::no_pod_env());
    let mut env = env("kexeci").await;
    env.container("sleeper", &["sleep", "3600"], PodSpec::default())
        .await;
    let big: String = (0..100_000).map(|i| format!("line {i}\n")).collect();
    let mut k = spawn(
        &env,
        &["exec", "-i", "sleeper", "--", "sh", "-c", "cat; echo end"],
        false,
    );
    let mut stdin = k.stdin.take().unwrap();
    let input = big.clone();
    let feed = tokio::spawn(async move {
        stdin.write_all(input.as_bytes()).await.unwrap();
    });
    let out = wait(k).await;
    feed.await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout == format!("{big}end\n").as_bytes());
    // A failing command's code comes back as kubectl's own.
    let k = spawn(
        &env,
        &["exec", "sleeper", "--", "sh", "-c", "echo e >&2; exit 3"],
        false,
    );
    let out = wait(k).await;
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("e\n"));
    assert_eq!(*env.api.upgrades.lock().unwrap(), vec!["spdy/3.1"; 2]);
    env.finish().await;
}

#[tokio::test]
async fn kubectl_port_forward_reaches_the_pod() {
    skip_if!(skip::no_pod_env());
    let mut env = env("kpf").await;
    env.container(
        "web",
        &[
            "sh",
            "-c",
            "mkdir -p /www && echo pf-ok > /www/index.html && exec httpd -f -p 8080 -h /www",
        ],
        PodSpec::default(),
    )
    .await;
    let local = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut k = spawn(
        &env,
        &[
            "port-forward",
            "web",
            &format!("{local}:8080"),
            "--address",
            "127.0.0.1",
        ],
        false,
    );
    let mut stdout = k.stdout.take().unwrap();
    let mut seen = Vec::new();
    read_until(&mut stdout, &mut seen, b"Forwarding from").await;
    // httpd may still be starting: retry until it answers.
    wait::until(
        "pf-ok through kubectl",
        Duration::from_secs(30),
        async || {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", local))
                .await
                .unwrap();
            s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
            let mut resp = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut resp)).await;
            let text = String::from_utf8_lossy(&resp).into_owned();
            wait::check(text.contains("pf-ok"), text)
        },
    )
    .await;
    assert!(env
        .api
        .upgrades
        .lock()
        .unwrap()
        .iter()
        .all(|u| u == "spdy/3.1"));
    k.kill().await.unwrap();
    env.finish().await;
}

//! Debian's `kubectl` as the independent client of berthd's streaming server.
//!
//! kubectl only speaks to an API server, so [`FakeApiServer`] plays one on
//! loopback: it answers discovery and the pod GET from a small table, and for
//! `exec`, `attach` and `portforward` asks a [`UrlSource`] (normally berthd,
//! through CRI Exec/Attach/PortForward) for a streaming URL and proxies the
//! upgrade request to it byte for byte, as the API server and kubelet do.
//!
//! The binary is the one the `kubernetes-client` package installed, found
//! through dpkg (another package, such as Google Cloud SDK's, may own
//! `/usr/bin/kubectl`; `scripts/install-deps.sh` then diverts Debian's copy).
//! Its absence is an error, not a reason to skip: it is the oracle. Debian 12
//! ships kubectl 1.20, which speaks SPDY/3.1 for all three; the WebSocket
//! transports are covered by Python's websocket-client elsewhere.
//!
//! This file needs only std, tokio, serde_json and berth-proto: the shim's streaming tests
//! (`shim/tests/streaming_kubectl.rs`) compile it in with `#[path]`, putting
//! their test double of the runtime behind it, since they cannot depend on
//! this crate.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use berth_proto::v1::{AttachRequest, ExecRequest, PortForwardRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The path of Debian's kubectl (`kubernetes-client`), or why it is missing.
pub fn debian_kubectl() -> Result<PathBuf, String> {
    let out = std::process::Command::new("dpkg-query")
        .args(["-L", "kubernetes-client"])
        .output()
        .map_err(|e| format!("dpkg-query: {e}"))?;
    let missing = || {
        "Debian's kubernetes-client is not installed (scripts/install-deps.sh installs it)"
            .to_string()
    };
    if !out.status.success() {
        return Err(missing());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines().peekable();
    while let Some(l) = lines.next() {
        if l != "/usr/bin/kubectl" {
            continue;
        }
        // A diverted file is listed as its package's path followed by
        // "diverted by PKG to: PATH".
        let path = match lines.peek().and_then(|n| n.split_once(" to: ")) {
            Some((by, to)) if by.starts_with("diverted by") => to.to_string(),
            _ => l.to_string(),
        };
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "{} (from kubernetes-client) is missing",
                path.display()
            ))
        };
    }
    Err(missing())
}

/// What kubectl asked the fake API server to stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamRequest {
    /// `pods/<pod>/exec`.
    Exec {
        pod: String,
        cmd: Vec<String>,
        stdin: bool,
        stdout: bool,
        stderr: bool,
        tty: bool,
    },
    /// `pods/<pod>/attach`.
    Attach {
        pod: String,
        stdin: bool,
        stdout: bool,
        stderr: bool,
        tty: bool,
    },
    /// `pods/<pod>/portforward`.
    PortForward { pod: String, ports: Vec<i32> },
}

/// The CRI call kubelet makes for a [`StreamRequest`].
#[derive(Debug, Clone, PartialEq)]
pub enum CriStreamRequest {
    Exec(ExecRequest),
    Attach(AttachRequest),
    PortForward(PortForwardRequest),
}

impl StreamRequest {
    /// The kubectl pod the request names.
    pub fn pod(&self) -> &str {
        match self {
            StreamRequest::Exec { pod, .. }
            | StreamRequest::Attach { pod, .. }
            | StreamRequest::PortForward { pod, .. } => pod,
        }
    }

    /// The CRI request for it, on container `container_id` (exec, attach)
    /// or pod sandbox `pod_sandbox_id` (port-forward).
    pub fn into_cri(self, container_id: &str, pod_sandbox_id: &str) -> CriStreamRequest {
        match self {
            StreamRequest::Exec {
                cmd,
                stdin,
                stdout,
                stderr,
                tty,
                ..
            } => CriStreamRequest::Exec(ExecRequest {
                container_id: container_id.into(),
                cmd,
                tty,
                stdin,
                stdout,
                stderr,
                ..Default::default()
            }),
            StreamRequest::Attach {
                stdin,
                stdout,
                stderr,
                tty,
                ..
            } => CriStreamRequest::Attach(AttachRequest {
                container_id: container_id.into(),
                stdin,
                tty,
                stdout,
                stderr,
                ..Default::default()
            }),
            StreamRequest::PortForward { ports, .. } => {
                CriStreamRequest::PortForward(PortForwardRequest {
                    pod_sandbox_id: pod_sandbox_id.into(),
                    port: ports,
                })
            }
        }
    }
}

/// Mints the streaming URL for a request (e.g. by a CRI call to berthd).
pub type UrlSource =
    Arc<dyn Fn(StreamRequest) -> Pin<Box<dyn Future<Output = String> + Send>> + Send + Sync>;

/// A pod as kubectl sees it: its one container's `stdin` and `tty` decide
/// what `kubectl attach -i/-t` may use.
#[derive(Debug, Clone, Copy, Default)]
pub struct PodSpec {
    pub stdin: bool,
    pub tty: bool,
}

/// A fake API server on loopback; see the module doc.
#[derive(Debug)]
pub struct FakeApiServer {
    /// `http://127.0.0.1:PORT`, for `kubectl --server`.
    pub url: String,
    pods: Arc<Mutex<HashMap<String, PodSpec>>>,
    /// The `Upgrade` header of every proxied request, to prove the transport.
    pub upgrades: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const API: &str = r#"{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":"127.0.0.1"}]}"#;
const APIS: &str = r#"{"kind":"APIGroupList","apiVersion":"v1","groups":[]}"#;
const API_V1: &str = r#"{"kind":"APIResourceList","groupVersion":"v1","resources":[{"name":"pods","singularName":"pod","namespaced":true,"kind":"Pod","verbs":["get","list"],"shortNames":["po"]},{"name":"pods/exec","singularName":"","namespaced":true,"kind":"PodExecOptions","verbs":["create","get"]},{"name":"pods/attach","singularName":"","namespaced":true,"kind":"PodAttachOptions","verbs":["create","get"]},{"name":"pods/portforward","singularName":"","namespaced":true,"kind":"PodPortForwardOptions","verbs":["create","get"]}]}"#;

impl FakeApiServer {
    /// Listens on an ephemeral loopback port.
    pub async fn start(source: UrlSource) -> std::io::Result<FakeApiServer> {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", l.local_addr()?);
        let pods = Arc::new(Mutex::new(HashMap::new()));
        let upgrades = Arc::new(Mutex::new(Vec::new()));
        let (p, u) = (pods.clone(), upgrades.clone());
        let task = tokio::spawn(async move {
            while let Ok((c, _)) = l.accept().await {
                tokio::spawn(serve(c, source.clone(), p.clone(), u.clone()));
            }
        });
        Ok(FakeApiServer {
            url,
            pods,
            upgrades,
            task,
        })
    }

    /// Makes pod `name` (namespace `default`, one container `c`) exist.
    pub fn add_pod(&self, name: &str, spec: PodSpec) {
        self.pods.lock().unwrap().insert(name.to_string(), spec);
    }

    /// A `kubectl --server=<this>` command with no kubeconfig and the given
    /// remote-command transport preference (ignored by kubectl before 1.29).
    pub fn kubectl(&self, kubectl: &std::path::Path) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(kubectl);
        c.env("KUBECONFIG", "/dev/null")
            .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")
            .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")
            .arg(format!("--server={}", self.url))
            .kill_on_drop(true);
        c
    }
}

fn pod_json(name: &str, spec: PodSpec) -> String {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
        "spec": {"containers": [{"name": "c", "image": "busybox", "stdin": spec.stdin, "tty": spec.tty}]},
        "status": {"phase": "Running"},
    })
    .to_string()
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
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

/// What a request path asks for: a JSON body, or a stream of `pod`.
fn route(
    path: &str,
    target: &str,
    pods: &Mutex<HashMap<String, PodSpec>>,
) -> Option<Result<String, StreamRequest>> {
    match path {
        "/api" => return Some(Ok(API.into())),
        "/apis" => return Some(Ok(APIS.into())),
        "/api/v1" => return Some(Ok(API_V1.into())),
        _ => {}
    }
    let rest = path.strip_prefix("/api/v1/namespaces/default/pods/")?;
    let (pod, sub) = rest.split_once('/').unwrap_or((rest, ""));
    let spec = *pods.lock().unwrap().get(pod)?;
    let q = query(target);
    let flag = |k: &str| q.iter().any(|(n, v)| n == k && v == "true");
    let all = |k: &str| {
        q.iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .collect::<Vec<_>>()
    };
    let pod = pod.to_string();
    Some(match sub {
        "" => Ok(pod_json(&pod, spec)),
        "exec" => Err(StreamRequest::Exec {
            pod,
            cmd: all("command"),
            stdin: flag("stdin"),
            stdout: flag("stdout"),
            stderr: flag("stderr"),
            tty: flag("tty"),
        }),
        "attach" => Err(StreamRequest::Attach {
            pod,
            stdin: flag("stdin"),
            stdout: flag("stdout"),
            stderr: flag("stderr"),
            tty: flag("tty"),
        }),
        "portforward" => Err(StreamRequest::PortForward {
            pod,
            ports: all("ports").iter().filter_map(|p| p.parse().ok()).collect(),
        }),
        _ => return None,
    })
}

/// Serves one client connection until it is upgraded (then proxies it) or closed.
async fn serve(
    mut c: TcpStream,
    source: UrlSource,
    pods: Arc<Mutex<HashMap<String, PodSpec>>>,
    upgrades: Arc<Mutex<Vec<String>>>,
) {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            match c.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
        buf.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let mut req_line = lines.next().unwrap_or("").split(' ');
        let method = req_line.next().unwrap_or("").to_string();
        let target = req_line.next().unwrap_or("").to_string();
        let path = target.split('?').next().unwrap_or("");
        let req = match route(path, &target, &pods) {
            Some(Ok(body)) => {
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                if c.write_all(resp.as_bytes()).await.is_err() {
                    return;
                }
                continue;
            }
            Some(Err(req)) => req,
            None => {
                let body = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}"#;
                let resp = format!(
                    "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                if c.write_all(resp.as_bytes()).await.is_err() {
                    return;
                }
                continue;
            }
        };
        let url = source(req).await;
        let upgrade = head.split("\r\n").find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("upgrade:")
                .map(|v| v.trim().to_string())
        });
        upgrades.lock().unwrap().push(upgrade.unwrap_or_default());
        let rest = url.strip_prefix("http://").unwrap_or(&url);
        let (host, new_path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let Ok(mut up) = TcpStream::connect(host).await else {
            return;
        };
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
        if up.write_all(fwd.as_bytes()).await.is_err() || up.write_all(&buf).await.is_err() {
            return;
        }
        let _ = tokio::io::copy_bidirectional(&mut c, &mut up).await;
        return;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_streams_with_their_query() {
        let pods = Mutex::new(HashMap::from([("p".to_string(), PodSpec::default())]));
        let t = "/api/v1/namespaces/default/pods/p/exec?command=sh&command=-c&command=echo+a%3Db&stdin=true&stdout=true&tty=true";
        let path = t.split('?').next().unwrap();
        assert_eq!(
            route(path, t, &pods),
            Some(Err(StreamRequest::Exec {
                pod: "p".into(),
                cmd: vec!["sh".into(), "-c".into(), "echo a=b".into()],
                stdin: true,
                stdout: true,
                stderr: false,
                tty: true,
            }))
        );
        assert!(route("/api/v1/namespaces/default/pods/q", "", &pods).is_none());
    }
}

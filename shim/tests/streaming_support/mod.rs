//! Shared pieces of the streaming integration tests: a test double of the
//! container runtime that runs local processes, and minimal SPDY and
//! WebSocket clients that speak the Kubernetes protocols to the real server.
//!
//! TEST DOUBLE: `LocalRuntime` stands in for berth-monitor. It runs the
//! command directly on the host (no container), with pipes or a real pty, and
//! "port-forwards" to 127.0.0.1. The protocol code under test is the real one.
#![allow(dead_code)]

// Polling with a deadline: the integration harness's own helper, compiled
// in from its source (the shim's tests cannot depend on that crate).
#[path = "../../../integration/src/wait.rs"]
pub mod wait;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_shim::error::{Error, Result};
use berth_shim::streaming::spdy::{Frame, FrameCodec};
use berth_shim::streaming::{
    process, AsyncReadWrite, ProcessIo, StreamRuntime, StreamingConfig, StreamingServer,
};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A shell command that waits (polling) until its terminal has a size, then
/// prints it: the size arrives as a resize after the command starts.
pub const AFTER_RESIZE_STTY_SIZE: &str =
    "while [ \"$(stty size)\" = \"0 0\" ]; do sleep 0.05; done; stty size";

/// Test double of the container runtime: local processes, loopback TCP.
#[derive(Default)]
pub struct LocalRuntime {
    /// Pids of every process started, to check they are gone afterwards.
    pub pids: Mutex<Vec<u32>>,
    /// Port-forward calls: (pod, port).
    pub forwards: Mutex<Vec<(String, u16)>>,
}

impl LocalRuntime {
    fn run(&self, cmd: Vec<String>, tty: bool, stdin: bool) -> Result<ProcessIo> {
        let (argv0, args) = cmd
            .split_first()
            .ok_or_else(|| Error::InvalidArgument("cmd: empty".into()))?;
        let mut command = tokio::process::Command::new(argv0);
        command.args(args);
        let (io, pid) = if tty {
            process::spawn_with_pty(command, stdin)?
        } else {
            process::spawn_piped(command, stdin)?
        };
        self.pids.lock().unwrap().push(pid.unwrap_or(0));
        Ok(io)
    }
}

#[async_trait::async_trait]
impl StreamRuntime for LocalRuntime {
    async fn exec(
        &self,
        container_id: &str,
        cmd: Vec<String>,
        tty: bool,
        stdin: bool,
    ) -> Result<ProcessIo> {
        if container_id == "missing" {
            return Err(Error::NotFound(format!(
                "container {container_id} not found"
            )));
        }
        self.run(cmd, tty, stdin)
    }

    async fn attach(&self, _container_id: &str, tty: bool, stdin: bool) -> Result<ProcessIo> {
        // The "main process" of the fake container: prints, echoes stdin, fails.
        self.run(
            vec![
                "sh".into(),
                "-c".into(),
                "echo attached; cat; exit 7".into(),
            ],
            tty,
            stdin,
        )
    }

    async fn port_forward(&self, pod: &str, port: u16) -> Result<Box<dyn AsyncReadWrite>> {
        self.forwards.lock().unwrap().push((pod.to_string(), port));
        let c = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| Error::Runtime(format!("connect localhost:{port}: {e}")))?;
        Ok(Box::new(c))
    }
}

/// Starts a server with `cfg` tweaks on an ephemeral loopback port.
pub async fn server(idle_secs: u64) -> (StreamingServer, Arc<LocalRuntime>) {
    let rt = Arc::new(LocalRuntime::default());
    let cfg = StreamingConfig {
        idle_timeout_secs: idle_secs,
        stream_creation_timeout_secs: 5,
        ..Default::default()
    };
    let s = StreamingServer::start(&cfg, rt.clone()).await.unwrap();
    (s, rt)
}

/// Whether process `pid` is gone (or a zombie nobody waits for).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit(')')
            .next()
            .map(|rest| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
    }
}

/// Waits (10 s at most) until the runtime has started `n` processes;
/// returns the pid of the `n`th.
pub async fn nth_pid(rt: &LocalRuntime, n: usize) -> u32 {
    let what = format!("process #{n} to start");
    wait::until_now(&what, Duration::from_secs(10), || {
        let pids = rt.pids.lock().unwrap().clone();
        pids.get(n - 1).copied().ok_or(pids)
    })
    .await
}

/// Waits up to `secs` for `pid` to disappear.
pub async fn wait_gone(pid: u32, secs: u64) -> bool {
    for _ in 0..secs * 20 {
        if process_gone(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Splits `http://host:port/path` into (`host:port`, `/path`).
pub fn split_url(url: &str) -> (String, String) {
    let rest = url.strip_prefix("http://").expect("http url");
    let slash = rest.find('/').unwrap();
    (rest[..slash].to_string(), rest[slash..].to_string())
}

/// Sends a raw HTTP/1.1 request and returns (status, headers, leftover bytes, stream).
pub async fn http_request(
    url: &str,
    extra_headers: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, BytesMut, TcpStream) {
    let (host, path) = split_url(url);
    let mut s = TcpStream::connect(&host).await.unwrap();
    let mut req = format!("POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n");
    for (k, v) in extra_headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = BytesMut::new();
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = s.read_buf(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed before the response head");
    };
    let head = String::from_utf8(buf.split_to(end + 4).to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    (status, headers, buf, s)
}

/// A minimal SPDY/3.1 client, as Kubernetes' client-go drives spdystream.
pub struct SpdyClient {
    pub sock: TcpStream,
    codec: FrameCodec,
    buf: BytesMut,
    next_id: u32,
    pub protocol: String,
}

/// What the server sent on each stream of a finished session.
#[derive(Debug, Default)]
pub struct Received {
    pub data: HashMap<u32, Vec<u8>>,
    pub fin: Vec<u32>,
    pub replied: Vec<u32>,
    pub goaway: bool,
}

impl SpdyClient {
    /// Upgrades `url` offering `protocols`; panics unless the server says 101.
    pub async fn connect(url: &str, protocols: &[&str]) -> SpdyClient {
        let mut headers = vec![("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1")];
        for p in protocols {
            headers.push(("X-Stream-Protocol-Version", p));
        }
        let (status, h, buf, sock) = http_request(url, &headers).await;
        assert_eq!(status, 101, "upgrade refused: {h:?}");
        let protocol = h
            .iter()
            .find(|(k, _)| k == "x-stream-protocol-version")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        SpdyClient {
            sock,
            codec: FrameCodec::new(),
            buf,
            next_id: 1,
            protocol,
        }
    }

    pub async fn send(&mut self, f: Frame) {
        let mut out = BytesMut::new();
        self.codec.encode(&f, &mut out).unwrap();
        self.sock.write_all(&out).await.unwrap();
    }

    /// Opens a stream with `headers`; returns its id.
    pub async fn open(&mut self, headers: &[(&str, &str)]) -> u32 {
        let id = self.next_id;
        self.next_id += 2;
        self.send(Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            slot: 0,
            flags: 0,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
        .await;
        id
    }

    /// Sends data on stream `id`, with FIN when `fin`.
    pub async fn data(&mut self, id: u32, data: &[u8], fin: bool) {
        self.send(Frame::Data {
            stream_id: id,
            flags: if fin { 1 } else { 0 },
            data: Bytes::copy_from_slice(data),
        })
        .await;
    }

    /// The next frame; `None` at EOF.
    pub async fn next_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = self.codec.decode(&mut self.buf).unwrap() {
                return Some(f);
            }
            let n = self.sock.read_buf(&mut self.buf).await.ok()?;
            if n == 0 {
                return None;
            }
        }
    }

    /// Reads frames, recording them into `r`, until `done(r)` or EOF; answers pings.
    pub async fn read_until(&mut self, r: &mut Received, done: impl Fn(&Received) -> bool) {
        while !done(r) {
            let Some(f) = tokio::time::timeout(Duration::from_secs(20), self.next_frame())
                .await
                .expect("server went silent")
            else {
                return;
            };
            match f {
                Frame::SynReply { stream_id, .. } => r.replied.push(stream_id),
                Frame::Data {
                    stream_id,
                    flags,
                    data,
                } => {
                    r.data
                        .entry(stream_id)
                        .or_default()
                        .extend_from_slice(&data);
                    if flags & 1 != 0 {
                        r.fin.push(stream_id);
                    }
                }
                Frame::GoAway { .. } => r.goaway = true,
                Frame::Ping { id } => self.send(Frame::Ping { id }).await,
                _ => {}
            }
        }
    }
}

/// A WebSocket connection to the streaming `url` offering `protocols` (the
/// `Sec-WebSocket-Protocol` value); returns it with the protocol the server
/// chose ("" when it chose none).
pub async fn ws_connect(
    url: &str,
    protocols: &str,
) -> (
    tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    String,
) {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let ws_url = url.replacen("http://", "ws://", 1);
    let mut req = ws_url.into_client_request().unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", protocols.parse().unwrap());
    let (host, _) = split_url(url);
    let tcp = tokio::net::TcpStream::connect(host).await.unwrap();
    let (ws, resp) = tokio_tungstenite::client_async(req, tcp).await.unwrap();
    let proto = resp
        .headers()
        .get("sec-websocket-protocol")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (ws, proto)
}

/// An Attach to container `c1` with stdin and stdout, and stderr unless `tty`
/// (a terminal merges it into stdout).
pub fn attach_req(tty: bool) -> berth_proto::v1::AttachRequest {
    berth_proto::v1::AttachRequest {
        container_id: "c1".into(),
        stdin: true,
        stdout: true,
        stderr: !tty,
        tty,
        ..Default::default()
    }
}

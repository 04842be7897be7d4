//! gRPC clients other than grpc-go against the real berthd: Python grpcio
//! with its default options (gRPC C-core sends the %-encoded socket path as
//! `:authority`), grpcio told to send the raw socket path (what grpc-java
//! and grpcurl send), and a hand-made HTTP/2 client sending an empty
//! `:authority`. Without `berth_shim::grpc_authority` hyper resets every one
//! of these streams with PROTOCOL_ERROR.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use berth_integration::env::TestEnv;
use berth_integration::{skip, skip_if};
use berth_proto::v1::{ContainerStatusRequest, ListContainersRequest, VersionResponse};
use prost::Message as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn grpcio_missing() -> Option<String> {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import grpc, grpc_tools"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    (!ok).then(|| "python3 grpcio/grpcio-tools missing: run scripts/install-deps.sh".into())
}

/// Runs the Python client in `mode` and returns its JSON report.
async fn grpcio(env: &TestEnv, mode: &str) -> serde_json::Value {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = manifest.join("tests/clients/cri_grpcio.py");
    let proto = manifest.join("../proto/proto");
    let logs = env.logs.path().join(mode);
    let run = tokio::process::Command::new("python3")
        .arg(&script)
        .arg(env.berthd.socket_path())
        .arg(&proto)
        .arg(env.image("busybox"))
        .arg(&logs)
        .arg(mode)
        .kill_on_drop(true)
        .output();
    // A bound, not a timing assertion: a hung client fails instead of hanging CI.
    let out = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("python client hung")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python grpcio ({mode}) failed: {stderr}\nberthd log:\n{}",
        env.berthd.log()
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("python output is not JSON ({e}): {stderr}"))
}

async fn check_grpcio_report(env: &mut TestEnv, mode: &str) {
    let r = grpcio(env, mode).await;
    assert_eq!(r["version"]["runtime_name"], "berth", "{mode}: {r}");
    assert_eq!(r["version"]["runtime_api_version"], "v1", "{mode}: {r}");
    assert!(
        r["image_ref"].as_str().unwrap().starts_with("sha256:"),
        "{mode}: {r}"
    );
    assert_eq!(r["started_event"], true, "{mode}: {r}");
    assert_eq!(r["state"], "CONTAINER_RUNNING", "{mode}: {r}");
    assert_eq!(r["exec"]["stdout"], "out-42\n", "{mode}: {r}");
    assert_eq!(r["exec"]["stderr"], "err\n", "{mode}: {r}");
    assert_eq!(r["exec"]["exit_code"], 3, "{mode}: {r}");
    assert_eq!(r["pods_left"], serde_json::json!([]), "{mode}: {r}");
    assert_eq!(r["removed_status"], "NOT_FOUND", "{mode}: {r}");
    let events: Vec<&str> = r["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(
        events[..2],
        ["CONTAINER_CREATED_EVENT", "CONTAINER_STARTED_EVENT"],
        "{mode}: {r}"
    );
    assert_eq!(r["event_errors"], serde_json::json!([]), "{mode}: {r}");
    // What the Python client did is what berthd holds: its container is gone.
    let id = r["container_id"].as_str().unwrap().to_string();
    let status = env
        .cri
        .runtime
        .container_status(ContainerStatusRequest {
            container_id: id.clone(),
            verbose: false,
        })
        .await;
    assert_eq!(status.unwrap_err().code(), tonic::Code::NotFound, "{mode}");
    let listed = env
        .cri
        .runtime
        .list_containers(ListContainersRequest { filter: None })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.containers.iter().all(|c| c.id != id), "{mode}");
}

#[tokio::test]
async fn python_grpcio_and_an_empty_authority_are_served() {
    skip_if!(skip::no_pod_env());
    if let Some(why) = grpcio_missing() {
        panic!("{why}");
    }
    let mut env = TestEnv::start_for_pods_unpulled().await.unwrap();
    check_grpcio_report(&mut env, "default").await;
    check_grpcio_report(&mut env, "raw-path").await;
    let version = version_with_authority(env.berthd.socket_path(), "").await;
    assert_eq!(version.runtime_name, "berth");
    assert_eq!(version.runtime_api_version, "v1");
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = u32::try_from(payload.len()).unwrap().to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[kind, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Calls Version over a hand-made HTTP/2 connection whose request carries
/// `:authority` = `authority`, header fields as plain HPACK literals.
async fn version_with_authority(socket: &Path, authority: &str) -> VersionResponse {
    let mut conn = tokio::net::UnixStream::connect(socket).await.unwrap();
    let mut block = Vec::new();
    for (n, v) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/runtime.v1.RuntimeService/Version"),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        // Literal without indexing, new name; lengths below 127 fit one byte.
        block.push(0);
        block.push(u8::try_from(n.len()).unwrap());
        block.extend_from_slice(n.as_bytes());
        block.push(u8::try_from(v.len()).unwrap());
        block.extend_from_slice(v.as_bytes());
    }
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(0x4, 0, 0, &[])); // SETTINGS
    out.extend(frame(0x1, 0x4, 1, &block)); // HEADERS, END_HEADERS
    out.extend(frame(0x0, 0x1, 1, &[0, 0, 0, 0, 0])); // an empty VersionRequest, END_STREAM
    conn.write_all(&out).await.unwrap();
    let mut message = Vec::new();
    loop {
        let mut h = [0u8; 9];
        conn.read_exact(&mut h).await.unwrap();
        let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
        let mut payload = vec![0; len];
        conn.read_exact(&mut payload).await.unwrap();
        let (kind, flags) = (h[3], h[4]);
        let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]);
        match (kind, stream) {
            (0x4, 0) if flags & 0x1 == 0 => conn.write_all(&frame(0x4, 0x1, 0, &[])).await.unwrap(),
            (0x3, 1) => panic!("berthd reset the stream (authority {authority:?}): {payload:?}"),
            (0x7, _) => panic!("berthd sent GOAWAY (authority {authority:?}): {payload:?}"),
            (0x0, 1) => message.extend_from_slice(&payload),
            (0x1, 1) if flags & 0x1 != 0 => break, // trailers
            _ => {}
        }
    }
    assert!(message.len() >= 5, "no gRPC message in the reply");
    let len = u32::from_be_bytes([message[1], message[2], message[3], message[4]]) as usize;
    VersionResponse::decode(&message[5..5 + len]).unwrap()
}

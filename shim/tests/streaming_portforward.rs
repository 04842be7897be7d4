//! Port-forward through the streaming server over SPDY and WebSocket to a
//! TCP echo server on loopback (the runtime test double connects there
//! instead of inside a pod's network namespace).

mod streaming_support;

use std::time::Duration;

use berth_proto::v1::PortForwardRequest;
use futures::{SinkExt, StreamExt};
use streaming_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// An echo server that upper-cases nothing: it returns exactly what it got,
/// then closes after the client half-closes.
async fn echo_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => s.write_all(&buf[..n]).await.unwrap(),
                    }
                }
            });
        }
    });
    port
}

/// A port nothing listens on.
async fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

fn pf_req(ports: Vec<i32>) -> PortForwardRequest {
    PortForwardRequest {
        pod_sandbox_id: "pod1".into(),
        port: ports,
    }
}

#[tokio::test]
async fn spdy_port_forward_multiplexes_requests_and_reports_errors() {
    let (srv, rt) = server(60).await;
    let echo = echo_server().await;
    let dead = closed_port().await;
    let url = srv.port_forward_url(&pf_req(vec![])).unwrap();
    let mut c = SpdyClient::connect(&url, &["portforward.k8s.io"]).await;
    assert_eq!(c.protocol, "portforward.k8s.io");
    let p = echo.to_string();
    let mut pairs = Vec::new();
    for rid in ["0", "1"] {
        let e = c
            .open(&[("streamType", "error"), ("port", &p), ("requestID", rid)])
            .await;
        let d = c
            .open(&[("streamType", "data"), ("port", &p), ("requestID", rid)])
            .await;
        pairs.push((e, d));
    }
    // Two connections at once, each with its own bytes; one large.
    let big: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
    c.data(pairs[0].1, b"first", true).await;
    for chunk in big.chunks(20_000) {
        c.data(pairs[1].1, chunk, false).await;
    }
    c.data(pairs[1].1, b"", true).await;
    let mut r = Received::default();
    let (d0, d1) = (pairs[0].1, pairs[1].1);
    c.read_until(&mut r, |r| r.fin.contains(&d0) && r.fin.contains(&d1))
        .await;
    assert_eq!(r.data[&d0], b"first");
    assert!(r.data[&d1] == big);
    assert!(r.data.get(&pairs[0].0).is_none_or(|e| e.is_empty()));

    // A port with no listener: the message arrives on the error stream.
    let q = dead.to_string();
    let e = c
        .open(&[("streamType", "error"), ("port", &q), ("requestID", "2")])
        .await;
    let d = c
        .open(&[("streamType", "data"), ("port", &q), ("requestID", "2")])
        .await;
    c.read_until(&mut r, |r| r.fin.contains(&e) && r.fin.contains(&d))
        .await;
    let msg = String::from_utf8(r.data[&e].clone()).unwrap();
    assert!(
        msg.contains(&format!("error forwarding port {dead} to pod pod1")),
        "{msg}"
    );
    assert_eq!(
        rt.forwards.lock().unwrap().clone(),
        vec![
            ("pod1".to_string(), echo),
            ("pod1".to_string(), echo),
            ("pod1".to_string(), dead)
        ]
    );
}

#[tokio::test]
async fn spdy_port_forward_pairs_streams_of_clients_without_request_ids() {
    let (srv, _rt) = server(60).await;
    let echo = echo_server().await.to_string();
    let url = srv.port_forward_url(&pf_req(vec![])).unwrap();
    let mut c = SpdyClient::connect(&url, &["portforward.k8s.io"]).await;
    // Old clients: error stream then data stream, paired by id - 2.
    c.open(&[("streamType", "error"), ("port", &echo)]).await;
    let d = c.open(&[("streamType", "data"), ("port", &echo)]).await;
    c.data(d, b"legacy", true).await;
    let mut r = Received::default();
    c.read_until(&mut r, |r| r.fin.contains(&d)).await;
    assert_eq!(r.data[&d], b"legacy");
}

#[tokio::test]
async fn websocket_port_forward_prefixes_ports_and_echoes() {
    let (srv, _rt) = server(60).await;
    let echo = echo_server().await;
    let dead = closed_port().await;
    let url = srv
        .port_forward_url(&pf_req(vec![echo as i32, dead as i32]))
        .unwrap();
    let (mut ws, proto) = ws_connect(&url, "v4.channel.k8s.io").await;
    assert_eq!(proto, "v4.channel.k8s.io");
    let mut firsts = std::collections::HashMap::new();
    let mut chans: Vec<Vec<u8>> = vec![Vec::new(); 4];
    let mut sent = false;
    loop {
        let m = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("server went silent");
        let Some(Ok(m)) = m else { break };
        let Message::Binary(b) = m else {
            if matches!(m, Message::Close(_)) {
                break;
            }
            continue;
        };
        let ch = b[0] as usize;
        if let std::collections::hash_map::Entry::Vacant(v) = firsts.entry(ch) {
            v.insert(b[1..].to_vec());
        } else {
            chans[ch].extend_from_slice(&b[1..]);
        }
        if firsts.len() == 4 && !sent {
            ws.send(Message::binary(b"\x00ping over ws".to_vec()))
                .await
                .unwrap();
            sent = true;
        }
        if chans[0] == b"ping over ws" && !chans[3].is_empty() {
            break;
        }
    }
    assert_eq!(firsts[&0], echo.to_le_bytes());
    assert_eq!(firsts[&1], echo.to_le_bytes());
    assert_eq!(firsts[&2], dead.to_le_bytes());
    assert_eq!(firsts[&3], dead.to_le_bytes());
    assert_eq!(chans[0], b"ping over ws");
    let err = String::from_utf8(chans[3].clone()).unwrap();
    assert!(
        err.contains(&format!("error forwarding port {dead}")),
        "{err}"
    );
}

#[tokio::test]
async fn websocket_port_forward_without_ports_is_refused() {
    let (srv, _rt) = server(60).await;
    let url = srv.port_forward_url(&pf_req(vec![])).unwrap();
    let (code, ..) = http_request(
        &url,
        &[
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
    )
    .await;
    assert_eq!(code, 400);
}

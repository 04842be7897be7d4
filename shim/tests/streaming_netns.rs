//! Root test: `connect_in_netns` reaches a listener that exists only inside
//! another network namespace (created here with `ip netns`), which is what
//! the real port-forward does for a pod.

use std::process::Stdio;
use std::time::Duration;

use berth_shim::streaming::netns::connect_in_netns;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

const ECHO: &str = r#"
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1)
print("ready", flush=True)
c, _ = s.accept()
data = c.recv(100)
c.sendall(b"pod says " + data)
c.close()
"#;

struct NetnsGuard(String);

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

fn ip(args: &[&str]) -> bool {
    std::process::Command::new("ip")
        .args(args)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test]
async fn connect_in_netns_reaches_a_listener_only_the_pod_can_see() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP: needs root to create a network namespace");
        return;
    }
    let name = format!("berth-stream-{}", std::process::id());
    if !ip(&["netns", "add", &name]) {
        eprintln!("SKIP: `ip netns add` failed");
        return;
    }
    let _guard = NetnsGuard(name.clone());
    assert!(ip(&[
        "netns", "exec", &name, "ip", "link", "set", "lo", "up"
    ]));
    // A port that is free on the host too, so a host-side connect is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = tokio::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &name,
            "python3",
            "-c",
            ECHO,
            &port.to_string(),
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut ready = tokio::io::BufReader::new(server.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), ready.next_line())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(line.as_deref(), Some("ready"));

    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "the listener must not be visible from the host namespace"
    );
    let mut s = connect_in_netns(format!("/run/netns/{name}"), port)
        .await
        .unwrap();
    s.write_all(b"hi").await.unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"pod says hi");

    // Nothing listening there any more: a clear error naming the port.
    let _ = server.wait().await;
    let e = connect_in_netns(format!("/run/netns/{name}"), port)
        .await
        .unwrap_err();
    assert!(e.to_string().contains(&format!("localhost:{port}")), "{e}");
    let e = connect_in_netns("/nonexistent/netns", port)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("/nonexistent/netns"), "{e}");
}

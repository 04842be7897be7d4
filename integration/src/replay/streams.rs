//! Using the stream URLs that Exec, Attach and PortForward answer with,
//! through the project's streaming client, as `kubectl exec`, `attach` and
//! `port-forward` would (the kubelet hands the URL to the API server, which
//! proxies the stream unchanged). What must come out is what the recorded
//! session saw (see the traces' README).

use std::time::Duration;

use berth_shim::streaming::client::{self, RemoteStdio, Transport};
use berth_shim::streaming::BoxWriter;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long an attach may take to show the container's output.
const ATTACH_WAIT: Duration = Duration::from_secs(20);
/// How long any one stream may run.
const STREAM_LIMIT: Duration = Duration::from_secs(60);

fn flag(req: &Value, key: &str) -> bool {
    req.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// Runs the exec behind `url` for the (mapped) Exec request `req` in a pod
/// whose hostname is `hostname`, and checks its output.
pub async fn exec(url: &str, req: &Value, hostname: &str) -> Result<(), String> {
    let cmd: Vec<String> = req["cmd"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let (stdin, tty) = (flag(req, "stdin"), flag(req, "tty"));
    let joined = cmd.join(" ");
    // `cat` echoes what it is given; other commands get an empty stdin.
    let input: Option<Vec<u8>> = stdin.then(|| {
        if cmd == ["cat"] {
            b"stdin-ok\n".to_vec()
        } else {
            Vec::new()
        }
    });
    let got = tokio::time::timeout(
        STREAM_LIMIT,
        client::run_and_collect(
            url,
            Transport::WebSocket,
            input,
            flag(req, "stdout"),
            flag(req, "stderr"),
            tty,
        ),
    )
    .await
    .map_err(|_| format!("exec {joined:?}: no end within {STREAM_LIMIT:?}"))?
    .map_err(|e| format!("exec {joined:?}: {e}"))?;
    let out = String::from_utf8_lossy(&got.stdout).into_owned();
    let want: Option<String> = if cmd == ["cat"] {
        Some("stdin-ok\n".into())
    } else if tty && joined == "sh -c tty" {
        // The terminal turns \n into \r\n; nothing else may be on it.
        Some("/dev/pts/0\r\n".into())
    } else if joined.contains("echo exec-ok $(hostname)") {
        Some(format!("exec-ok {hostname}\n"))
    } else {
        None
    };
    if got.exit_code != 0 {
        return Err(format!(
            "exec {joined:?}: exit {} (stdout {out:?}, stderr {:?})",
            got.exit_code,
            String::from_utf8_lossy(&got.stderr)
        ));
    }
    match want {
        Some(w) if w != out => Err(format!("exec {joined:?}: stdout {out:?}, want {w:?}")),
        _ => Ok(()),
    }
}

/// Attaches through `url` (the mapped Attach request `req`) and waits until
/// the container's output shows up: a `tick` line when its command prints
/// ticks, any output otherwise; then detaches.
pub async fn attach(url: &str, req: &Value, command: &str) -> Result<(), String> {
    let (out_tx, mut out_rx) = tokio::io::duplex(64 * 1024);
    let (err_tx, mut err_rx) = tokio::io::duplex(64 * 1024);
    let stdio = RemoteStdio {
        stdin: None,
        stdout: flag(req, "stdout").then(|| Box::new(out_tx) as BoxWriter),
        stderr: flag(req, "stderr").then(|| Box::new(err_tx) as BoxWriter),
        tty: flag(req, "tty"),
        resize: None,
    };
    let url = url.to_string();
    let session =
        tokio::spawn(
            async move { client::remote_command(&url, Transport::WebSocket, stdio).await },
        );
    let want_tick = command.contains("tick");
    let seen = tokio::time::timeout(ATTACH_WAIT, async {
        let mut all = Vec::new();
        let (mut a, mut b) = ([0u8; 4096], [0u8; 4096]);
        let (mut out_done, mut err_done) = (false, false);
        loop {
            if out_done && err_done {
                return all;
            }
            tokio::select! {
                r = out_rx.read(&mut a), if !out_done => match r.unwrap_or(0) {
                    0 => out_done = true,
                    n => all.extend_from_slice(&a[..n]),
                },
                r = err_rx.read(&mut b), if !err_done => match r.unwrap_or(0) {
                    0 => err_done = true,
                    n => all.extend_from_slice(&b[..n]),
                },
            }
            let text = String::from_utf8_lossy(&all);
            if !all.is_empty() && (!want_tick || text.lines().any(|l| l.starts_with("tick "))) {
                return all;
            }
        }
    })
    .await;
    let ended = if session.is_finished() {
        Some(format!("{:?}", session.await))
    } else {
        session.abort();
        None
    };
    let ended = ended
        .map(|e| format!(" (the session ended: {e})"))
        .unwrap_or_default();
    match seen {
        Ok(all)
            if !all.is_empty()
                && (!want_tick || String::from_utf8_lossy(&all).contains("tick ")) =>
        {
            Ok(())
        }
        Ok(all) => Err(format!(
            "attach: the stream ended with {:?}, want the container's {}{ended}",
            String::from_utf8_lossy(&all),
            if want_tick { "tick lines" } else { "output" }
        )),
        Err(_) => Err(format!(
            "attach: no container output within {ATTACH_WAIT:?}{ended}"
        )),
    }
}

/// Forwards one connection through `url` to `port` in the pod and sends an
/// HTTP `GET /`; the answer must be 200 and, when `page` is given, contain it.
pub async fn port_forward(url: &str, port: u16, page: Option<&str>) -> Result<(), String> {
    let (mut ours, theirs) = tokio::io::duplex(64 * 1024);
    let forward = client::port_forward(url, Transport::Spdy, port, theirs);
    let talk = async {
        ours.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut got = Vec::new();
        ours.read_to_end(&mut got)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(got)
    };
    let (fwd, got) = tokio::time::timeout(STREAM_LIMIT, async { tokio::join!(forward, talk) })
        .await
        .map_err(|_| format!("port-forward to {port}: no answer within {STREAM_LIMIT:?}"))?;
    fwd.map_err(|e| format!("port-forward to {port}: {e}"))?;
    let got = String::from_utf8_lossy(&got?).into_owned();
    let status_ok = got.lines().next().is_some_and(|l| l.contains(" 200"));
    if !status_ok || page.is_some_and(|p| !got.contains(p)) {
        return Err(format!(
            "port-forward to {port}: GET / answered {:?}, want 200{}",
            got.chars().take(300).collect::<String>(),
            page.map(|p| format!(" with {p:?}")).unwrap_or_default()
        ));
    }
    Ok(())
}

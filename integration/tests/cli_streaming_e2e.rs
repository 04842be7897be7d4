//! The `berth` CLI's streaming verbs end to end: `exec` (with and without
//! `-i`/`-t`, exit codes passed through), `attach` and `port-forward`, run as
//! the real binary against a live berthd, over SPDY and WebSocket.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use berth_integration::berth_cli::BerthCli;
use berth_integration::env::TestEnv;
use berth_integration::{skip, skip_if, wait};

const TRANSPORTS: [&str; 2] = ["spdy", "websocket"];

/// The streaming verbs' way to run berth: stdin fed from a buffer and a time limit.
trait RunStreaming {
    fn run_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Output;
    fn run(&self, args: &[&str]) -> Output;
}

impl RunStreaming for BerthCli {
    /// Runs with `stdin` piped in; returns the output.
    fn run_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        wait_output(child, Duration::from_secs(60))
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, b"")
    }
}

/// Waits for `child` at most `limit` (killing it after), collecting its output.
fn wait_output(child: Child, limit: Duration) -> Output {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("berth (pid {pid}) did not finish within {limit:?}");
        }
    }
}

/// Lines of a child's stdout, read on a thread so waits can time out.
fn lines_of(out: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// The first line containing `want`, within 20 s.
fn wait_line(lines: &mpsc::Receiver<String>, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(l) if l.contains(want) => return l,
            Ok(l) => seen.push(l),
            Err(e) => panic!("no line with {want:?} ({e}); saw {seen:?}"),
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn exec_streams_stdin_and_passes_exit_codes() {
    skip_if!(skip::no_pod_env());
    let mut env = TestEnv::start_for_pods().await.unwrap();
    let berth = BerthCli::for_env(&env);
    let (pod, cid) = env
        .run_busybox_pod("cli-exec", "exec sleep 3600", false)
        .await
        .unwrap();
    for t in TRANSPORTS {
        let tr = ["--transport", t];
        // Piped stdin reaches the command; its EOF ends `read`.
        let out = berth.run_with_stdin(
            &[
                &["exec", "-i"][..],
                &tr,
                &[&cid, "sh", "-c", "read x; echo got:$x"],
            ]
            .concat(),
            b"hello\n",
        );
        assert_eq!(out.status.code(), Some(0), "{t}: {out:?}");
        assert_eq!(text(&out.stdout), "got:hello\n", "{t}");

        // The remote exit code is berth's (crictl does the same).
        let out = berth.run(&[&["exec"][..], &tr, &[&cid, "sh", "-c", "exit 4"]].concat());
        assert_eq!(out.status.code(), Some(4), "{t}: {out:?}");
        let out = berth.run(
            &[
                &["exec"][..],
                &tr,
                &[&cid, "sh", "-c", "echo out; echo err >&2; exit 3"],
            ]
            .concat(),
        );
        assert_eq!(out.status.code(), Some(3), "{t}: {out:?}");
        assert_eq!(text(&out.stdout), "out\n", "{t}");
        assert_eq!(text(&out.stderr), "err\n", "{t}");

        // -t needs -i and a terminal on stdin, as with crictl: a pty would
        // never pass the pipe's EOF on.
        let out = berth.run_with_stdin(
            &[&["exec", "-it"][..], &tr, &[&cid, "sh"]].concat(),
            b"exit 7\n",
        );
        assert_eq!(out.status.code(), Some(1), "{t}: {out:?}");
        assert!(
            text(&out.stderr).contains("input is not a terminal"),
            "{out:?}"
        );
        let out = berth.run(&[&["exec", "-t"][..], &tr, &[&cid, "true"]].concat());
        assert_eq!(out.status.code(), Some(1), "{t}: {out:?}");
        assert!(
            text(&out.stderr).contains("-t must be combined with -i"),
            "{out:?}"
        );
    }
    // A command that cannot start: the shell's 127 and a message on stderr.
    let out = berth.run(&["exec", &cid, "/no/such/binary"]);
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    assert!(text(&out.stderr).contains("/no/such/binary"), "{out:?}");
    // An unknown container is refused before any streaming.
    let out = berth.run(&["exec", "-i", "nonexistent", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("nonexistent"), "{out:?}");
    let out = berth.run(&["exec", "-s", "-i", &cid, "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("-s/--sync"), "{out:?}");

    // On a real terminal: raw mode, the window size sent at the start, and
    // the local mode restored afterwards.
    if Path::new("/usr/bin/script").exists() {
        let cmd = format!(
            "stty rows 33 cols 77; {} -r {} exec -it {cid} stty size; stty -a",
            berth.binary.display(),
            berth.endpoint
        );
        let out = Command::new("/usr/bin/script")
            .args(["-qec", &cmd, "/dev/null"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let s = text(&out.stdout);
        assert!(out.status.success(), "{s}");
        assert!(s.contains("33 77"), "size not sent: {s:?}");
        let after = &s[s.find("33 77").unwrap()..];
        assert!(
            after.contains(" icanon") && after.contains(" echo ") && !after.contains("-icanon"),
            "terminal mode not restored: {after:?}"
        );
    }
    if Path::new("/usr/bin/tmux").exists() {
        interactive_shell_follows_window_resizes(&berth, &cid);
    }
    env.remove_pod(&pod).await.unwrap();
}

/// `exec -it sh` in a tmux window, as a person would use it: keystrokes go
/// through the raw terminal, a window resize reaches the shell (SIGWINCH),
/// and `exit 9` becomes berth's exit code.
fn interactive_shell_follows_window_resizes(berth: &BerthCli, cid: &str) {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("tmux.sock");
    let rc_file = dir.path().join("rc");
    let tmux = |args: &[&str]| {
        Command::new("/usr/bin/tmux")
            .arg("-S")
            .arg(&sock)
            .args(args)
            .output()
            .unwrap()
    };
    let screen = || text(&tmux(&["capture-pane", "-p", "-t", "t"]).stdout);
    let wait_screen = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let s = screen();
            if s.contains(want) {
                return;
            }
            assert!(Instant::now() < deadline, "no {want:?} on screen:\n{s}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let cmd = format!(
        "{} -r {} exec -it {cid} sh; echo rc=$? > {}",
        berth.binary.display(),
        berth.endpoint,
        rc_file.display()
    );
    let out = tmux(&[
        "new-session",
        "-d",
        "-s",
        "t",
        "-x",
        "100",
        "-y",
        "30",
        &cmd,
    ]);
    assert!(out.status.success(), "{out:?}");
    let _server = KillTmuxServer(sock.clone());
    wait_screen("/ #");
    tmux(&[
        "send-keys",
        "-t",
        "t",
        "echo size-$((3*3)): $(stty size)",
        "Enter",
    ]);
    wait_screen("size-9: 30 100");
    tmux(&["resize-window", "-t", "t", "-x", "120", "-y", "40"]);
    wait_screen_after_resize(&tmux, &screen);
    tmux(&["send-keys", "-t", "t", "exit 9", "Enter"]);
    // The shell creates the file before it writes the line.
    let rc = wait::until_blocking("berth to exit", Duration::from_secs(15), || {
        let rc = std::fs::read_to_string(&rc_file).unwrap_or_default();
        wait::check(rc.ends_with('\n'), screen()).map(|()| rc)
    });
    assert_eq!(rc.trim(), "rc=9");
}

/// Ends the test's private tmux server (and the berth in it) however the test ends.
struct KillTmuxServer(PathBuf);

impl Drop for KillTmuxServer {
    fn drop(&mut self) {
        let _ = Command::new("/usr/bin/tmux")
            .arg("-S")
            .arg(&self.0)
            .arg("kill-server")
            .output();
    }
}

/// The resize is asynchronous: ask for the size until the new one shows.
fn wait_screen_after_resize(tmux: &dyn Fn(&[&str]) -> Output, screen: &dyn Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(15);
    for i in 0.. {
        let marker = format!("echo now-{i}-$((1+1)): $(stty size)");
        tmux(&["send-keys", "-t", "t", &marker, "Enter"]);
        std::thread::sleep(Duration::from_millis(300));
        let s = screen();
        if s.contains(&format!("now-{i}-2: 40 120")) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "resize never reached the shell:\n{s}"
        );
    }
}

#[tokio::test]
async fn attach_sees_output_and_feeds_stdin() {
    skip_if!(skip::no_pod_env());
    let mut env = TestEnv::start_for_pods().await.unwrap();
    let berth = BerthCli::for_env(&env);
    let script = r#"while read l; do [ "$l" = quit ] && exit 0; echo got:$l; done"#;
    let mut pods = Vec::new();
    for t in TRANSPORTS {
        let (pod, cid) = env
            .run_busybox_pod(&format!("cli-attach-{t}"), script, true)
            .await
            .unwrap();
        pods.push(pod);
        let mut child = berth
            .command(&["attach", "-i", "--transport", t, &cid])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = lines_of(child.stdout.take().unwrap());
        let mut stdin = child.stdin.take().unwrap();
        // The attach may still be connecting: repeat until output comes back.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            stdin.write_all(b"ping\n").unwrap();
            if let Ok(l) = lines.recv_timeout(Duration::from_millis(500)) {
                assert_eq!(l, "got:ping", "{t}");
                break;
            }
            assert!(Instant::now() < deadline, "{t}: attach saw no output");
        }
        stdin.write_all(b"second\n").unwrap();
        wait_line(&lines, "got:second");
        // The container's process ending ends the attach, successfully.
        stdin.write_all(b"quit\n").unwrap();
        let out = wait_output(child, Duration::from_secs(20));
        assert_eq!(out.status.code(), Some(0), "{t}: {}", text(&out.stderr));
    }
    let out = berth.run(&["attach", "nonexistent"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("nonexistent"), "{out:?}");
    for pod in pods {
        env.remove_pod(&pod).await.unwrap();
    }
}

fn http_get(port: u16) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    s.write_all(b"GET /index.html HTTP/1.0\r\nHost: pod\r\n\r\n")?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    Ok(resp)
}

#[tokio::test]
async fn port_forward_serves_local_connections() {
    skip_if!(skip::no_pod_env());
    let mut env = TestEnv::start_for_pods().await.unwrap();
    let berth = BerthCli::for_env(&env);
    let script = "mkdir -p /www && echo hello-from-pod > /www/index.html && \
        exec httpd -f -p 8080 -h /www";
    let (pod, _) = env.run_busybox_pod("cli-pf", script, false).await.unwrap();
    for t in TRANSPORTS {
        let mut child = berth
            .command(&["port-forward", "--transport", t, &pod, "0:8080"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = lines_of(child.stdout.take().unwrap());
        let line = wait_line(&lines, "Forwarding from 127.0.0.1:");
        let port: u16 = line
            .trim_start_matches("Forwarding from 127.0.0.1:")
            .trim_end_matches(" -> 8080")
            .parse()
            .unwrap_or_else(|_| panic!("{line:?}"));
        // httpd may still be starting: retry until a full response comes back.
        let what = format!("{t}: the page through the forward");
        let resp = wait::until_blocking(&what, Duration::from_secs(20), || match http_get(port) {
            Ok(r) if r.contains("hello-from-pod") => Ok(r),
            other => Err(other),
        });
        assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{t}: {resp}");
        // Each connection gets its own forward; a second one works as well.
        let resp = http_get(port).unwrap();
        assert!(resp.ends_with("hello-from-pod\n"), "{t}: {resp}");
        // Ctrl-C ends it cleanly.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
            nix::sys::signal::Signal::SIGINT,
        )
        .unwrap();
        let out = wait_output(child, Duration::from_secs(20));
        assert_eq!(out.status.code(), Some(0), "{t}: {}", text(&out.stderr));
    }
    let out = berth.run(&["port-forward", "nonexistent", "8080"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("nonexistent"), "{out:?}");
    let out = berth.run(&["port-forward", &pod, "http"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("not a port number"), "{out:?}");
    env.remove_pod(&pod).await.unwrap();
}

//! Root tests for `berth-monitor exec`, `pin-ns` and the attach socket.

mod common;

use berth_runtime::monitor::attach;
use common::*;
use serde_json::json;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Unpins on drop, so a failing assertion does not leak namespace mounts or a
/// pause process.
struct Pinned(std::path::PathBuf);

impl Drop for Pinned {
    fn drop(&mut self) {
        let _ = berth_runtime::unpin_namespaces(&self.0);
    }
}

/// `berth-monitor exec` (with `--tty` if `tty`) of `process` (an OCI process
/// object, written to the fixture's `process.json`) in `f`'s container.
fn exec_command(f: &Fixture, process: serde_json::Value, tty: bool) -> Command {
    let p = f.tmp.path().join("process.json");
    std::fs::write(&p, process.to_string()).unwrap();
    let mut cmd = Command::new(MONITOR);
    cmd.arg("exec");
    if tty {
        cmd.arg("--tty");
    }
    cmd.arg("--state-dir")
        .arg(f.state_dir())
        .arg("--process")
        .arg(&p);
    cmd
}

fn exec(f: &Fixture, process: serde_json::Value) -> std::process::Output {
    exec_command(f, process, false).output().unwrap()
}

/// `berth-monitor pin-ns --dir <dir> <args>`.
fn pin_ns(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(MONITOR)
        .args(["pin-ns", "--dir"])
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
}

/// Waits until `c`'s init runs `cmdline` (NUL-separated, as in
/// /proc/<pid>/cmdline): a script's `exec` happens a moment after start.
fn wait_for_cmdline(c: &berth_runtime::Container, cmdline: &[u8]) {
    let path = format!("/proc/{}/cmdline", c.pid());
    wait_for("the container's init to exec its command", || {
        std::fs::read(&path).is_ok_and(|b| b == cmdline)
    });
}

/// A started container `name` running `script`.
fn running(name: &str, script: &str) -> (Fixture, berth_runtime::Container) {
    let mut f = Fixture::new(name);
    f.args(script);
    let c = f.create();
    c.start().unwrap();
    (f, c)
}

fn proc_json(script: &str) -> serde_json::Value {
    let caps = all_caps();
    json!({
        "args": ["sh", "-c", script], "cwd": "/tmp", "env": ["PATH=/bin", "X=y"],
        "user": {"uid": 0, "gid": 0},
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": true
    })
}

#[test]
fn exec_runs_inside_the_container_with_its_exit_code() {
    if !can_run() {
        return;
    }
    let (f, c) = running("exec", "echo started; exec sleep 1000");
    // The test reads pid 1's command line; CI once exec'd in between.
    wait_for_cmdline(&c, b"sleep\x001000\x00");
    let out = exec(&f, proc_json("hostname; echo pid=$$; pwd; echo $X; ls /proc | grep -c '^[0-9]'; cat /proc/1/cmdline | tr '\\0' ' '; echo oops >&2; exit 4"));
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "berth-test");
    let pid: u32 = lines[1].strip_prefix("pid=").unwrap().parse().unwrap();
    assert!(
        pid > 1 && pid < 100,
        "exec'd pid {pid} is not in the container's pid namespace"
    );
    assert_eq!(lines[2], "/tmp");
    assert_eq!(lines[3], "y");
    let visible: u32 = lines[4].parse().unwrap();
    assert!(visible <= 5, "sees {visible} processes");
    assert_eq!(lines[5].trim(), "sleep 1000");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n");
    // The exec'd process joined the container's cgroup.
    assert!(c.stats().unwrap().pids >= 1);

    let out = exec(&f, proc_json("kill -9 $$"));
    assert_eq!(out.status.code(), Some(137));

    let mut p = proc_json("");
    p["args"] = json!(["/bin/nope"]);
    let out = exec(&f, p);
    assert_eq!(out.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&out.stderr).contains("process.args[0]"));
    c.delete(true).unwrap();
}

#[test]
fn killing_exec_helper_kills_the_execd_process() {
    if !can_run() {
        return;
    }
    let (f, c) = running("exectimeout", "exec sleep 1000");
    let mut child = exec_command(&f, proc_json("exec sleep 777"), false)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let find = || {
        std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| c == b"sleep\x00777\x00")
                .unwrap_or(false)
        })
    };
    wait_for("exec'd sleep to start", find);
    child.kill().unwrap();
    let _ = child.wait();
    wait_for("exec'd sleep to die with its helper", || !find());
    c.delete(true).unwrap();
}

const POD_SYSCTLS: [(&str, &str); 2] = [
    ("net.ipv4.ip_unprivileged_port_start", "42"),
    ("kernel.shmmni", "1234"),
];

#[test]
fn pinned_namespaces_are_joined_by_path() {
    if !can_run() {
        return;
    }
    let f0 = Fixture::new("pin");
    let dir = f0.tmp.path().join("ns");
    let mut args = vec!["--net", "--ipc", "--uts", "--hostname", "podhost"];
    let sysctls: Vec<String> = POD_SYSCTLS
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for s in &sysctls {
        args.extend(["--sysctl", s]);
    }
    let out = pin_ns(&dir, &args);
    let _pinned = Pinned(dir.clone());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_pinned_pod_namespaces(&dir, "pinned");
}

#[test]
fn namespaces_pinned_from_a_thread_are_joined_and_leave_the_process_alone() {
    if !can_run() {
        return;
    }
    let own = |ns: &str| std::fs::read_link(format!("/proc/thread-self/ns/{ns}")).unwrap();
    let before: Vec<_> = ["net", "ipc", "uts"].iter().map(|n| own(n)).collect();
    let f0 = Fixture::new("pinthread");
    let dir = f0.tmp.path().join("ns");
    let opts = berth_runtime::pin::PinOptions {
        dir: dir.clone(),
        net: true,
        ipc: true,
        uts: true,
        pid: false,
        hostname: Some("podhost".into()),
        sysctls: POD_SYSCTLS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    let _pinned = Pinned(dir.clone());
    berth_runtime::pin_namespaces_in_thread(&opts).unwrap();
    // The calling thread (and so the process) kept its namespaces.
    let after: Vec<_> = ["net", "ipc", "uts"].iter().map(|n| own(n)).collect();
    assert_eq!(before, after);
    check_pinned_pod_namespaces(&dir, "thread-pinned");

    // A pid namespace needs a process: refused, nothing made.
    let pid_dir = f0.tmp.path().join("ns-pid");
    let err = berth_runtime::pin_namespaces_in_thread(&berth_runtime::pin::PinOptions {
        dir: pid_dir.clone(),
        pid: true,
        ..Default::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("pid"), "{err}");
    assert!(!pid_dir.exists());
    // A failure half way (a sysctl that does not exist) leaves nothing behind.
    let err = berth_runtime::pin_namespaces_in_thread(&berth_runtime::pin::PinOptions {
        dir: pid_dir.clone(),
        net: true,
        sysctls: vec![("net.no.such.key".into(), "1".into())],
        ..Default::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("net.no.such.key"), "{err}");
    assert!(!pid_dir.exists());
}

/// Two containers join the net/ipc/uts namespaces pinned in `dir` (hostname
/// `podhost`, [`POD_SYSCTLS`]) and see them; the host is untouched; unpinning
/// removes everything and is idempotent.
fn check_pinned_pod_namespaces(dir: &Path, name: &str) {
    for ns in ["net", "ipc", "uts"] {
        assert!(dir.join(ns).exists());
    }
    let net_ino = std::fs::metadata(dir.join("net"))
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap();

    let mut runs = Vec::new();
    for name in [format!("{name}-a"), format!("{name}-b")] {
        let mut f = Fixture::new(&name);
        f.spec["hostname"] = json!(null);
        f.spec["linux"]["namespaces"] = json!([
            {"type": "pid"}, {"type": "mount"},
            {"type": "network", "path": dir.join("net")},
            {"type": "ipc", "path": dir.join("ipc")},
            {"type": "uts", "path": dir.join("uts")}
        ]);
        f.args("hostname; cat /proc/sys/net/ipv4/ip_unprivileged_port_start; cat /proc/sys/kernel/shmmni; grep -c : /proc/net/dev; cat /sys/class/net/lo/operstate 2>/dev/null || ip link show lo | head -1; readlink /proc/self/ns/net");
        let st = f.run();
        assert_eq!(st.exit.unwrap().code, 0, "{}", f.log());
        runs.push(f.log_lines("stdout"));
    }
    for out in &runs {
        assert_eq!(out[0], "podhost");
        assert_eq!(out[1], "42");
        assert_eq!(out[2], "1234");
        assert_eq!(out[3], "1", "only lo in a pinned netns: {out:?}");
        assert_eq!(out[5], format!("net:[{net_ino}]"));
    }
    // The host was not touched.
    assert_ne!(
        std::fs::read_to_string("/proc/sys/kernel/shmmni")
            .unwrap()
            .trim(),
        "1234"
    );

    berth_runtime::unpin_namespaces(dir).unwrap();
    assert!(!dir.exists());
    berth_runtime::unpin_namespaces(dir).unwrap();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(dir.to_str().unwrap()));
}

#[test]
fn pin_ns_failure_leaves_nothing() {
    if !can_run() {
        return;
    }
    let f = Fixture::new("pinfail");
    let dir = f.tmp.path().join("ns");
    let out = pin_ns(&dir, &["--net", "--uts", "--sysctl", "net.no.such.key=1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("net.no.such.key"));
    assert!(!dir.exists());
    let out = pin_ns(&dir, &["--net", "--sysctl", "vm.swappiness=1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("vm.swappiness"));
    assert!(!dir.exists());
}

fn read_frame(s: &mut UnixStream) -> (u8, Vec<u8>) {
    let mut hdr = [0u8; 5];
    s.read_exact(&mut hdr).unwrap();
    let len = u32::from_be_bytes([hdr[1], hdr[2], hdr[3], hdr[4]]) as usize;
    let mut p = vec![0u8; len];
    s.read_exact(&mut p).unwrap();
    (hdr[0], p)
}

/// Creates `f`'s container with an attach socket taking stdin (not started).
fn create_with_stdin(f: &Fixture) -> berth_runtime::Container {
    let out = f.create_raw(&["--stdin"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    berth_runtime::Container::load(&f.state_dir()).unwrap()
}

#[test]
fn attach_socket_carries_stdin_and_output() {
    if !can_run() {
        return;
    }
    let mut f = Fixture::new("attach");
    f.args("while read line; do echo got:$line; echo err:$line >&2; done; echo bye; exit 3");
    let c = create_with_stdin(&f);
    let mut s = UnixStream::connect(f.state_dir().join("attach.sock")).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    c.start().unwrap();
    s.write_all(&attach::encode(attach::STDIN, b"hello\n"))
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        got.push(read_frame(&mut s));
    }
    got.sort();
    assert_eq!(
        got,
        vec![
            (attach::STDOUT, b"got:hello\n".to_vec()),
            (attach::STDERR, b"err:hello\n".to_vec())
        ]
    );
    s.write_all(&attach::encode(attach::STDIN_CLOSE, b""))
        .unwrap();
    let mut frames = Vec::new();
    loop {
        let fr = read_frame(&mut s);
        let done = fr.0 == attach::EXIT;
        frames.push(fr);
        if done {
            break;
        }
    }
    assert_eq!(frames.last().unwrap().1, 3i32.to_be_bytes().to_vec());
    assert!(frames.contains(&(attach::STDOUT, b"bye\n".to_vec())));
    assert_eq!(wait_stopped(&c).exit.unwrap().code, 3);
    assert_eq!(f.log_lines("stdout"), vec!["got:hello", "bye"]);
}

/// Regression: the monitor took a client's end of input (shutdown of its
/// sending side, as berthd's attach does once stdin ends, or at once for an
/// attach without stdin) for a disconnect and dropped it, so the attach ended
/// with "attach socket closed before the container exited".
#[test]
fn attach_client_that_ends_its_input_still_gets_output_and_the_exit() {
    if !can_run() {
        return;
    }
    let mut f = Fixture::new("attach-half");
    f.args("read line; echo got:$line; read line; echo bye; exit 4");
    let c = create_with_stdin(&f);
    // One client feeds stdin then ends its input; one never sends anything.
    let mut feeder = UnixStream::connect(f.state_dir().join("attach.sock")).unwrap();
    let mut watcher = UnixStream::connect(f.state_dir().join("attach.sock")).unwrap();
    watcher.shutdown(std::net::Shutdown::Write).unwrap();
    for s in [&feeder, &watcher] {
        s.set_read_timeout(Some(WAIT)).unwrap();
    }
    c.start().unwrap();
    feeder
        .write_all(&attach::encode(attach::STDIN, b"one\n"))
        .unwrap();
    feeder
        .write_all(&attach::encode(attach::STDIN_CLOSE, b""))
        .unwrap();
    feeder.shutdown(std::net::Shutdown::Write).unwrap();
    for s in [&mut feeder, &mut watcher] {
        let mut frames = Vec::new();
        loop {
            let fr = read_frame(s);
            let done = fr.0 == attach::EXIT;
            frames.push(fr);
            if done {
                break;
            }
        }
        let out: Vec<u8> = frames
            .iter()
            .filter(|(k, _)| *k == attach::STDOUT)
            .flat_map(|(_, p)| p.clone())
            .collect();
        assert_eq!(out, b"got:one\nbye\n", "{frames:?}");
        assert_eq!(frames.last().unwrap().1, 4i32.to_be_bytes().to_vec());
    }
    assert_eq!(wait_stopped(&c).exit.unwrap().code, 4);
}

#[test]
fn terminal_container_gets_a_pty_and_resizes() {
    if !can_run() {
        return;
    }
    let mut f = Fixture::new("tty");
    f.spec["process"]["terminal"] = json!(true);
    f.spec["process"]["consoleSize"] = json!({"height": 30, "width": 100});
    f.args("tty; stat -c %t:%T /dev/console /dev/pts/0; stty size; read x; stty size; exit 0");
    let c = f.create();
    let mut s = UnixStream::connect(f.state_dir().join("attach.sock")).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    c.start().unwrap();
    wait_for("first stty output", || f.log().contains("30 100"));
    s.write_all(&attach::encode(attach::RESIZE, &[0, 40, 0, 120]))
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(&attach::encode(attach::STDIN, b"go\r"))
        .unwrap();
    let st = wait_stopped(&c);
    assert_eq!(st.exit.unwrap().code, 0);
    let out = f.log_lines("stdout");
    // The terminal is the first pty of the container's own devpts (a host
    // pty would be "not a tty" there), and /dev/console is that device.
    assert_eq!(out[0], "/dev/pts/0", "{out:?}");
    assert_eq!(out[1], out[2], "/dev/console vs /dev/pts/0: {out:?}");
    assert!(out.iter().any(|l| l.trim() == "40 120"), "{out:?}");
}

#[test]
fn log_is_reopened_on_sigusr1_and_on_request() {
    if !can_run() {
        return;
    }
    let (f, c) = running(
        "reopen",
        "i=0; while :; do echo line$i; i=$((i+1)); sleep 0.02; done",
    );
    wait_for("first lines", || f.log().contains("line2"));
    let rotated = f.log_path().with_extension("log.1");
    std::fs::rename(f.log_path(), &rotated).unwrap();
    let mon = c.state_file().monitor_pid;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(mon),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    wait_for("a new log file after SIGUSR1", || f.log().contains("line"));
    std::fs::rename(f.log_path(), &rotated).unwrap();
    let mut s = UnixStream::connect(f.state_dir().join("attach.sock")).unwrap();
    s.write_all(&attach::encode(attach::REOPEN_LOG, b""))
        .unwrap();
    wait_for("a new log file after REOPEN_LOG", || {
        f.log().contains("line")
    });
    c.delete(true).unwrap();
}

#[test]
fn exec_with_tty_gets_a_terminal_of_the_containers_devpts() {
    if !can_run() {
        return;
    }
    let (f, c) = running("exectty", "exec sleep 1000");
    let pty = nix::pty::openpty(None, None).unwrap();
    berth_runtime::sys::process::set_winsize(pty.master.as_raw_fd(), 21, 63).unwrap();
    // `tty` names the terminal only if it exists in the container's /dev/pts;
    // `read` takes a line through the container's line discipline.
    let process =
        proc_json("[ -t 0 ] && echo isatty; tty; stty size; read line; echo got:$line; exit 9");
    let slave = std::fs::File::from(pty.slave);
    let mut child = exec_command(&f, process, true)
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave)
        .spawn()
        .unwrap();
    let mut master = std::fs::File::from(pty.master);
    let mut out = Vec::new();
    let mut buf = vec![0u8; 4096];
    // Type once the shell runs, as a user would: keys pressed before the
    // helper has put the host terminal in raw mode are echoed by it too.
    while !String::from_utf8_lossy(&out).contains("isatty") {
        let n = master.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "exec ended early: {:?}",
            String::from_utf8_lossy(&out)
        );
        out.extend_from_slice(&buf[..n]);
    }
    master.write_all(b"hello\n").unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(9));
    // EIO once the helper (the last holder of the slave) is gone.
    while let Ok(n) = master.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("isatty"), "{out:?}");
    assert!(
        out.contains("/dev/pts/"),
        "tty has no name in the container: {out:?}"
    );
    assert!(!out.contains("not a tty"), "{out:?}");
    assert!(out.contains("21 63"), "size not passed on: {out:?}");
    assert!(out.contains("got:hello"), "{out:?}");
    // Echoed once by the container's terminal, once by `echo`: a second line
    // discipline (the host pty not in raw mode) would echo it a third time.
    assert_eq!(out.matches("hello").count(), 2, "{out:?}");
    c.delete(true).unwrap();
}

#[test]
fn container_joins_another_containers_pid_namespace() {
    if !can_run() {
        return;
    }
    let mut a = Fixture::new("pidns-a");
    a.args("exec sleep 1001");
    let ca = a.create();
    ca.start().unwrap();
    wait_for_cmdline(&ca, b"sleep\x001001\x00");
    let mut b = Fixture::new("pidns-b");
    b.spec["linux"]["namespaces"][0] =
        json!({"type": "pid", "path": format!("/proc/{}/ns/pid", ca.pid())});
    b.args("echo pid=$$; cat /proc/1/cmdline | tr '\\0' ' '");
    let st = b.run();
    assert_eq!(st.exit.unwrap().code, 0, "{}", b.log());
    let out = b.log_lines("stdout");
    assert_ne!(out[0], "pid=1");
    assert_eq!(out[1].trim(), "sleep 1001");
    ca.delete(true).unwrap();
}

#[test]
fn pinned_pid_namespace_has_a_pause_init_and_is_shared() {
    if !can_run() {
        return;
    }
    let f0 = Fixture::new("pinpid");
    let dir = f0.tmp.path().join("ns");
    let out = pin_ns(&dir, &["--pid", "--uts", "--hostname", "sharedpid"]);
    let _pinned = Pinned(dir.clone());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pause: i32 = std::fs::read_to_string(dir.join("pause.pid"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(Path::new(&format!("/proc/{pause}")).exists());
    // The init is the libc-free serve binary (pin-ns waits for its exec).
    let exe = std::fs::read_link(format!("/proc/{pause}/exe")).unwrap();
    assert!(
        exe.to_string_lossy()
            .starts_with("/memfd:berth-monitor-serve"),
        "{exe:?}"
    );
    let mut f = Fixture::new("pinpid-c");
    f.spec["linux"]["namespaces"] = json!([
        {"type": "pid", "path": dir.join("pid")}, {"type": "mount"}, {"type": "network"},
        {"type": "uts", "path": dir.join("uts")}
    ]);
    f.spec["hostname"] = json!(null);
    f.args("echo pid=$$; cat /proc/1/cmdline | tr '\\0' ' '; echo; hostname");
    let st = f.run();
    assert_eq!(st.exit.unwrap().code, 0, "{}", f.log());
    let out = f.log_lines("stdout");
    assert_ne!(out[0], "pid=1");
    assert!(
        out[1].trim().starts_with("berth-monitor __pause --dir="),
        "{}",
        out[1]
    );
    assert_eq!(out[2], "sharedpid");
    berth_runtime::unpin_namespaces(&dir).unwrap();
    assert!(!dir.exists());
    wait_for("pause process to exit", || {
        std::fs::read_to_string(format!("/proc/{pause}/cmdline"))
            .map(|c| !c.contains("__pause"))
            .unwrap_or(true)
    });
}

#[test]
fn where_memfds_may_not_be_executed_the_pause_init_runs_from_a_file() {
    if !can_run() || !Path::new("/proc/sys/vm/memfd_noexec").exists() {
        return;
    }
    let f0 = Fixture::new("noexecmemfd");
    let dir = f0.tmp.path().join("ns");
    let _pinned = Pinned(dir.clone());
    // vm.memfd_noexec belongs to the pid namespace: set it to 2 ("no memfd
    // may be executed") in a throwaway one, whose end also ends the pause
    // init (it lives in a pid namespace below).
    let script = format!(
        "echo 2 > /proc/sys/vm/memfd_noexec && exec {MONITOR} pin-ns --dir {} --pid --uts",
        dir.display()
    );
    let out = Command::new("unshare")
        .args(["--pid", "--fork", "sh", "-c", &script])
        .output()
        .unwrap();
    // pin-ns returns once the init has exec'd; the copy is written only after
    // the memfd was refused.
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let copy = dir.join(berth_runtime::monitor::SERVE_FALLBACK_FILE);
    assert!(copy.exists(), "no copy at {copy:?}");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/vm/memfd_noexec")
            .unwrap()
            .trim(),
        "0",
        "the host's setting is untouched"
    );
    berth_runtime::unpin_namespaces(&dir).unwrap();
    assert!(!dir.exists());
}

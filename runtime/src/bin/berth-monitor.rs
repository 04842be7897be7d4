//! `berth-monitor`: the per-container monitor and the helpers that need a fresh
//! single-threaded process.
//!
//! ```text
//! berth-monitor create --id ID --bundle DIR --state-dir DIR [--log-path FILE]
//!                      [--stdin] [--restrict-oom-score-adj] [--cgroup-root DIR]
//!                      [--seccomp-cache DIR]
//! berth-monitor exec --state-dir DIR --process FILE [--tty]
//! berth-monitor pin-ns --dir DIR [--net] [--ipc] [--uts] [--pid] [--hostname NAME] [--sysctl K=V]...
//! berth-monitor start|state|stats --state-dir DIR
//! berth-monitor kill --state-dir DIR [--signal N] [--all]
//! berth-monitor delete --state-dir DIR [--force]
//! ```
//! Arguments are parsed by hand: clap would double the binary and the monitor's
//! resident memory for a handful of flags.

use berth_runtime::container::create::{self, CreateOptions};
use berth_runtime::container::exec;
use berth_runtime::pin::{self, PinOptions};
use berth_runtime::security::SecurityOptions;
use berth_runtime::sys::process::{self, Fork};
use berth_runtime::{Container, Error};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

struct Args {
    cmd: String,
    values: Vec<(String, Option<String>)>,
}

const VALUE_FLAGS: [&str; 20] = [
    "--id",
    "--bundle",
    "--state-dir",
    "--log-path",
    "--cgroup-root",
    "--process",
    "--dir",
    "--hostname",
    "--sysctl",
    "--signal",
    "--oom-baseline",
    "--fd-stdout",
    "--fd-stderr",
    "--fd-stdin",
    "--fd-pty",
    "--fd-attach",
    "--init-pid",
    "--cgroup-layout",
    "--cgroup-path",
    "--seccomp-cache",
];

impl Args {
    fn parse() -> Result<Args, String> {
        let mut it = std::env::args().skip(1);
        let cmd = it.next().ok_or("missing subcommand")?;
        let mut values = Vec::new();
        while let Some(a) = it.next() {
            if !a.starts_with("--") {
                return Err(format!("unexpected argument {a:?}"));
            }
            let (k, v) = match a.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None if VALUE_FLAGS.contains(&a.as_str()) => {
                    let v = it.next().ok_or(format!("{a} needs a value"))?;
                    (a, Some(v))
                }
                None => (a, None),
            };
            values.push((k, v));
        }
        Ok(Args { cmd, values })
    }

    fn get(&self, k: &str) -> Option<String> {
        self.values
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .and_then(|(_, v)| v.clone())
    }

    fn all(&self, k: &str) -> Vec<String> {
        self.values
            .iter()
            .filter(|(key, _)| key == k)
            .filter_map(|(_, v)| v.clone())
            .collect()
    }

    fn flag(&self, k: &str) -> bool {
        self.values.iter().any(|(key, _)| key == k)
    }

    fn need(&self, k: &str) -> Result<String, String> {
        self.get(k).ok_or(format!("{} needs {k}", self.cmd))
    }

    fn check_known(&self, known: &[&str]) -> Result<(), String> {
        for (k, _) in &self.values {
            if !known.contains(&k.as_str()) {
                return Err(format!("{}: unknown flag {k}", self.cmd));
            }
        }
        Ok(())
    }
}

fn main() {
    let args = match Args::parse() {
        Ok(a) => a,
        Err(e) => fail(&e, 2),
    };
    let code = match args.cmd.as_str() {
        "create" => cmd_create(&args),
        "exec" => cmd_exec(&args),
        "pin-ns" => cmd_pin(&args),
        "start" | "state" | "stats" | "kill" | "delete" => cmd_lib(&args),
        other => fail(&format!("unknown subcommand {other:?}"), 2),
    };
    std::process::exit(code);
}

fn fail(msg: &str, code: i32) -> ! {
    let _ = writeln!(std::io::stderr(), "berth-monitor: {msg}");
    std::process::exit(code)
}

fn abs(p: String) -> PathBuf {
    std::path::absolute(&p).unwrap_or_else(|_| PathBuf::from(p))
}

fn cmd_create(a: &Args) -> i32 {
    let parsed = (|| -> Result<(CreateOptions, Option<PathBuf>), String> {
        a.check_known(&[
            "--id",
            "--bundle",
            "--state-dir",
            "--log-path",
            "--stdin",
            "--restrict-oom-score-adj",
            "--cgroup-root",
            "--seccomp-cache",
        ])?;
        Ok((
            CreateOptions {
                id: a.need("--id")?,
                bundle: abs(a.need("--bundle")?),
                state_dir: abs(a.need("--state-dir")?),
                stdin: a.flag("--stdin"),
                security: SecurityOptions {
                    restrict_oom_score_adj: a.flag("--restrict-oom-score-adj"),
                },
                cgroup_root: a
                    .get("--cgroup-root")
                    .map(abs)
                    .unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup")),
                seccomp_cache: a.get("--seccomp-cache").map(abs),
            },
            a.get("--log-path").map(abs),
        ))
    })();
    let (opts, log_path) = match parsed {
        Ok(o) => o,
        Err(e) => fail(&e, 2),
    };
    let (mut report_r, report_w) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok((r, w)) => (std::fs::File::from(r), std::fs::File::from(w)),
        Err(e) => fail(&format!("pipe: {e}"), 1),
    };
    match process::fork() {
        Err(e) => fail(&format!("fork: {e}"), 1),
        Ok(Fork::Parent(_)) => {
            drop(report_w);
            let mut msg = String::new();
            let _ = report_r.read_to_string(&mut msg);
            match msg.trim_end().strip_prefix("ok ") {
                Some(pid) => {
                    println!("{pid}");
                    0
                }
                None => {
                    let m = msg
                        .trim_end()
                        .strip_prefix("error ")
                        .unwrap_or(msg.trim_end());
                    let m = if m.is_empty() {
                        "monitor exited during create"
                    } else {
                        m
                    };
                    let _ = writeln!(std::io::stderr(), "{m}");
                    1
                }
            }
        }
        Ok(Fork::Child) => {
            drop(report_r);
            monitor(opts, log_path, report_w)
        }
    }
}

/// The detached monitor: creates the container, reports, serves until exit.
fn monitor(opts: CreateOptions, log_path: Option<PathBuf>, mut report: std::fs::File) -> ! {
    // Out of the caller's process group, so signals aimed at it (a terminal's
    // ^C, a kill of the group) miss the monitor. Not a new session: on a host
    // with scheduler autogroups, setsid(2) outside a cpu cgroup makes a new
    // autogroup and moving into it costs a scheduling round (often several
    // ms on a busy node) on create's critical path; the monitor has no
    // terminal to lose either way.
    let _ = nix::unistd::setpgid(nix::unistd::Pid::from_raw(0), nix::unistd::Pid::from_raw(0));
    // Let go of the caller's stdio so it sees EOF once `create` returns.
    process::stdio_to_dev_null();
    let _ = std::env::set_current_dir("/");
    // berth-monitor-serve takes these from a signalfd; blocked now, a
    // SIGCHLD from an init that exits early stays pending across the exec.
    if let Err(e) = process::block_signals(&[
        libc::SIGCHLD,
        libc::SIGUSR1,
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
    ]) {
        let _ = writeln!(report, "error block signals: {e}");
        process::exit_now(1);
    }
    // Open the log before anything else so a bad --log-path fails create
    // (berth-monitor-serve opens it again).
    let made_log = match log_path.as_deref().map(prepare_log).transpose() {
        Ok(made) => made.unwrap_or(false),
        Err(e) => {
            let _ = writeln!(report, "error --log-path: {e}");
            process::exit_now(1);
        }
    };
    let created = match create::create(&opts) {
        Ok(c) => c,
        Err(e) => {
            if let (true, Some(p)) = (made_log, &log_path) {
                let _ = std::fs::remove_file(p);
            }
            let _ = writeln!(report, "error {e}");
            process::exit_now(1);
        }
    };
    let _ = writeln!(report, "ok {}", created.state.pid);
    drop(report);
    let err = exec_serve(&created, &opts.state_dir, log_path.as_deref());
    abandon(&created, &opts.state_dir, log_path.as_deref(), &err)
}

/// berth-monitor-serve could not be started: the container must not run
/// unwatched, so it is killed and the failure recorded as its exit, with the
/// reason as the last line of its log (stderr is /dev/null by now).
fn abandon(
    created: &create::Created,
    state_dir: &std::path::Path,
    log_path: Option<&std::path::Path>,
    err: &std::io::Error,
) -> ! {
    let pid = created.state.pid;
    let _ = process::kill(pid, libc::SIGKILL);
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    let exit = berth_runtime::ExitInfo {
        code: 128 + libc::SIGKILL,
        signal: Some(libc::SIGKILL),
        finished_at: berth_runtime::timefmt::now_nanos(),
        oom_killed: false,
    };
    let path = state_dir.join(berth_runtime::container::state::EXIT_FILE);
    if let Ok(json) = serde_json::to_vec(&exit) {
        let _ = berth_runtime::container::state::write_atomic(&path, &json);
    }
    if let Some(p) = log_path {
        if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(p) {
            let ts = berth_runtime::timefmt::rfc3339_nanos(exit.finished_at);
            let _ = writeln!(
                f,
                "{ts} stderr F berth-monitor: could not start berth-monitor-serve, the container was killed: {err}"
            );
        }
    }
    process::exit_now(1)
}

/// Creates the log file (and its directory); returns whether it is new.
fn prepare_log(p: &std::path::Path) -> Result<bool, String> {
    let existed = p.exists();
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
        .map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(!existed)
}

/// Execs berth-monitor-serve (embedded in this binary, see runtime/lite/)
/// with the container's stdio fds; returns only if that failed.
fn exec_serve(
    created: &create::Created,
    state_dir: &std::path::Path,
    log_path: Option<&std::path::Path>,
) -> std::io::Error {
    let mut argv = vec![
        "berth-monitor".to_string(),
        "__serve".into(),
        "--state-dir".into(),
        state_dir.to_string_lossy().into_owned(),
        "--init-pid".into(),
        created.state.pid.to_string(),
        "--oom-baseline".into(),
        created.oom_baseline.to_string(),
    ];
    if let Some(f) = created.cgroup.oom_kills_file() {
        argv.push("--oom-file".into());
        argv.push(f.to_string_lossy().into_owned());
    }
    if let Some(l) = log_path {
        argv.push("--log-path".into());
        argv.push(l.to_string_lossy().into_owned());
    }
    let mut fds = vec![("--fd-attach", created.attach.as_raw_fd())];
    match &created.stdio {
        create::MonitorStdio::Pipes {
            stdin,
            stdout,
            stderr,
        } => {
            fds.push(("--fd-stdout", stdout.as_raw_fd()));
            fds.push(("--fd-stderr", stderr.as_raw_fd()));
            if let Some(s) = stdin {
                fds.push(("--fd-stdin", s.as_raw_fd()));
            }
        }
        create::MonitorStdio::Pty { master } => fds.push(("--fd-pty", master.as_raw_fd())),
    }
    for (flag, fd) in fds {
        if let Err(e) = process::clear_cloexec(fd) {
            return e;
        }
        argv.push(flag.into());
        argv.push(fd.to_string());
    }
    process::exec_image(
        "berth-monitor-serve",
        berth_runtime::monitor::SERVE_BIN,
        &argv,
        &state_dir.join(berth_runtime::monitor::SERVE_FALLBACK_FILE),
    )
}

fn cmd_exec(a: &Args) -> i32 {
    if let Err(e) = a.check_known(&["--state-dir", "--process", "--tty", "--seccomp-cache"]) {
        fail(&e, 2);
    }
    let (dir, file) = match (a.need("--state-dir"), a.need("--process")) {
        (Ok(d), Ok(f)) => (abs(d), abs(f)),
        (Err(e), _) | (_, Err(e)) => fail(&e, 2),
    };
    let cache = a.get("--seccomp-cache").map(abs);
    let result = exec::load_process(&file)
        .and_then(|p| exec::exec(&dir, &p, a.flag("--tty"), cache.as_deref()));
    match result {
        Ok(code) => code,
        Err(e) => {
            let not_found = matches!(&e, Error::InvalidSpec { field, .. } if field == "process.args[0]")
                || e.to_string().starts_with("process.args[0]");
            let _ = writeln!(std::io::stderr(), "berth-monitor exec: {e}");
            if not_found {
                127
            } else {
                126
            }
        }
    }
}

fn cmd_pin(a: &Args) -> i32 {
    let parsed = (|| -> Result<PinOptions, String> {
        a.check_known(&[
            "--dir",
            "--net",
            "--ipc",
            "--uts",
            "--pid",
            "--hostname",
            "--sysctl",
        ])?;
        let mut sysctls = Vec::new();
        for s in a.all("--sysctl") {
            let (k, v) = s
                .split_once('=')
                .ok_or(format!("--sysctl {s:?} is not KEY=VALUE"))?;
            sysctls.push((k.to_string(), v.to_string()));
        }
        Ok(PinOptions {
            dir: abs(a.need("--dir")?),
            net: a.flag("--net"),
            ipc: a.flag("--ipc"),
            uts: a.flag("--uts"),
            pid: a.flag("--pid"),
            hostname: a.get("--hostname"),
            sysctls,
        })
    })();
    let opts = match parsed {
        Ok(o) => o,
        Err(e) => fail(&e, 2),
    };
    match pin::pin_namespaces(&opts) {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "{e}");
            1
        }
    }
}

fn cmd_lib(a: &Args) -> i32 {
    if let Err(e) = a.check_known(&["--state-dir", "--signal", "--all", "--force"]) {
        fail(&e, 2);
    }
    let dir = match a.need("--state-dir") {
        Ok(d) => abs(d),
        Err(e) => fail(&e, 2),
    };
    if a.cmd == "delete" {
        return match berth_runtime::delete_dir(&dir, a.flag("--force")) {
            Ok(()) => 0,
            Err(e) => fail(&e.to_string(), 1),
        };
    }
    let c = match Container::load(&dir) {
        Ok(c) => c,
        Err(e) => fail(&e.to_string(), 1),
    };
    let r = match a.cmd.as_str() {
        "start" => c.start().map(|_| String::new()),
        "state" => c
            .state()
            .map(|s| serde_json::to_string_pretty(&s).unwrap_or_default()),
        "stats" => c
            .stats()
            .map(|s| serde_json::to_string_pretty(&s).unwrap_or_default()),
        _ => {
            let sig = a
                .get("--signal")
                .and_then(|s| s.parse().ok())
                .unwrap_or(libc::SIGTERM);
            c.kill(sig, a.flag("--all")).map(|_| String::new())
        }
    };
    match r {
        Ok(out) => {
            if !out.is_empty() {
                println!("{out}");
            }
            0
        }
        Err(e) => fail(&e.to_string(), 1),
    }
}

//! `berth-monitor`: the per-container monitor and the helpers that need a fresh
//! single-threaded process.
//!
//! The subcommands and their flags are defined, for berthd and for this
//! binary, in `berth_runtime::monitor::command`.

use berth_runtime::container::create::{self, CreateOptions};
use berth_runtime::container::exec;
use berth_runtime::monitor::command::MonitorCommand;
use berth_runtime::monitor::failure;
use berth_runtime::monitor::serve_args::{ServeArgs, ServeCommand, ServeStdio};
use berth_runtime::pin::{self, PinOptions};
use berth_runtime::sys::process::{self, Fork};
use berth_runtime::{Container, Error};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let cmd = match MonitorCommand::decode(args.iter().map(|a| a.as_bytes())) {
        Ok(c) => c,
        Err(e) => fail(&e.to_string(), 2),
    };
    let code = match cmd {
        MonitorCommand::Create { options, log_path } => cmd_create(options, log_path),
        MonitorCommand::Exec {
            state_dir,
            process,
            tty,
            seccomp_cache,
        } => cmd_exec(&state_dir, &process, tty, seccomp_cache.as_deref()),
        MonitorCommand::PinNs(o) => cmd_pin(&o),
        other => cmd_lib(other),
    };
    std::process::exit(code);
}

fn fail(msg: &str, code: i32) -> ! {
    let _ = writeln!(std::io::stderr(), "berth-monitor: {msg}");
    std::process::exit(code)
}

fn cmd_create(opts: CreateOptions, log_path: Option<PathBuf>) -> i32 {
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
            let _ = writeln!(report, "error {}", failure::encode(&e));
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
    let stdio = match &created.stdio {
        create::MonitorStdio::Pipes {
            stdin,
            stdout,
            stderr,
        } => ServeStdio::Pipes {
            stdin: stdin.as_ref().map(AsRawFd::as_raw_fd),
            stdout: stdout.as_raw_fd(),
            stderr: stderr.as_raw_fd(),
        },
        create::MonitorStdio::Pty { master } => ServeStdio::Pty(master.as_raw_fd()),
    };
    let fds = match stdio {
        ServeStdio::Pipes {
            stdin,
            stdout,
            stderr,
        } => vec![Some(stdout), Some(stderr), stdin],
        ServeStdio::Pty(m) => vec![Some(m)],
    };
    for fd in fds
        .into_iter()
        .flatten()
        .chain([created.attach.as_raw_fd()])
    {
        if let Err(e) = process::clear_cloexec(fd) {
            return e;
        }
    }
    let bytes = |p: &Path| p.as_os_str().as_bytes().to_vec();
    let argv = ServeCommand::Serve(ServeArgs {
        state_dir: bytes(state_dir),
        pid: created.state.pid,
        oom_baseline: created.oom_baseline,
        oom_file: created.cgroup.oom_kills_file().map(|f| bytes(&f)),
        log_path: log_path.map(bytes),
        attach: created.attach.as_raw_fd(),
        stdio,
    })
    .encode();
    process::exec_image(
        "berth-monitor-serve",
        berth_runtime::monitor::SERVE_BIN,
        &argv,
        &state_dir.join(berth_runtime::monitor::SERVE_FALLBACK_FILE),
    )
}

fn cmd_exec(dir: &Path, file: &Path, tty: bool, cache: Option<&Path>) -> i32 {
    let result = exec::load_process(file).and_then(|p| exec::exec(dir, &p, tty, cache));
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

fn cmd_pin(opts: &PinOptions) -> i32 {
    match pin::pin_namespaces(opts) {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "{}", failure::encode(&e));
            1
        }
    }
}

fn cmd_lib(cmd: MonitorCommand) -> i32 {
    let dir = match &cmd {
        MonitorCommand::Delete { state_dir, force } => {
            return match berth_runtime::delete_dir(state_dir, *force) {
                Ok(()) => 0,
                Err(e) => fail(&failure::encode(&e), 1),
            };
        }
        MonitorCommand::Start { state_dir }
        | MonitorCommand::State { state_dir }
        | MonitorCommand::Stats { state_dir }
        | MonitorCommand::Kill { state_dir, .. } => state_dir,
        other => fail(&format!("{} is not a library call", other.name()), 2),
    };
    let c = match Container::load(dir) {
        Ok(c) => c,
        Err(e) => fail(&failure::encode(&e), 1),
    };
    let r = match &cmd {
        MonitorCommand::Start { .. } => c.start().map(|_| String::new()),
        MonitorCommand::State { .. } => c
            .state()
            .map(|s| serde_json::to_string_pretty(&s).unwrap_or_default()),
        MonitorCommand::Stats { .. } => c
            .stats()
            .map(|s| serde_json::to_string_pretty(&s).unwrap_or_default()),
        MonitorCommand::Kill { signal, all, .. } => c.kill(*signal, *all).map(|_| String::new()),
        other => fail(&format!("{} is not a library call", other.name()), 2),
    };
    match r {
        Ok(out) => {
            if !out.is_empty() {
                println!("{out}");
            }
            0
        }
        Err(e) => fail(&failure::encode(&e), 1),
    }
}

//! `berth-monitor-serve`: the per-container monitor's steady state.
//!
//! `berth-monitor create` makes the container and then execs this binary
//! (from a memfd holding a copy embedded in berth-monitor), handing it the
//! container's stdio, the attach socket and what it needs to record the exit:
//!
//! It is also pid 1 of a pod's shared pid namespace (`berth-monitor pin-ns
//! --pid` execs it as `berth-monitor __pause --dir=DIR`): it reaps orphans.
//!
//! ```text
//! berth-monitor __serve --state-dir DIR --init-pid N --oom-baseline N
//!     [--oom-file FILE] [--log-path FILE] --fd-attach N
//!     (--fd-stdout N --fd-stderr N [--fd-stdin N] | --fd-pty N)
//! ```
//!
//! It links no libc and no standard library: a monitor lives as long as its
//! container, one per container, so its resident memory is Berth's cost per
//! container. Built by `runtime/build.rs` with panic=abort; the loop is in
//! `serve.rs`, the system calls in `sys.rs`, the log format and attach framing
//! are shared with berth-runtime (`src/monitor/`).

#![no_std]
#![no_main]
// Keeps the compiler from turning the memory functions' loops in sys.rs into
// calls to themselves.
#![no_builtins]

extern crate alloc;

#[path = "../src/monitor/attach.rs"]
mod attach;
#[path = "../src/monitor/cri_log.rs"]
mod cri_log;
mod heap;
mod nr;
#[path = "../src/monitor/rfc3339.rs"]
mod rfc3339;
mod serve;
mod sys;

use alloc::vec::Vec;

#[global_allocator]
static HEAP: heap::Heap = heap::Heap::new();

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    sys::exit(70)
}

/// What `berth-monitor create` passes on the command line.
pub struct Config {
    pub state_dir: Vec<u8>,
    pub pid: i32,
    pub oom_baseline: u64,
    pub oom_file: Option<Vec<u8>>,
    pub log_path: Option<Vec<u8>>,
    pub attach: i32,
    pub stdio: Stdio,
}

pub enum Stdio {
    Pipes {
        stdin: Option<i32>,
        stdout: i32,
        stderr: i32,
    },
    Pty(i32),
}

fn parse(args: &sys::Args) -> Option<Config> {
    let mut state_dir = None;
    let mut pid = None;
    let mut oom_baseline = 0;
    let (mut oom_file, mut log_path) = (None, None);
    let (mut attach, mut stdin, mut stdout, mut stderr, mut pty) = (None, None, None, None, None);
    let mut i = 2;
    while i + 1 < args.len() {
        let (k, v) = (args.get(i)?, args.get(i + 1)?);
        let num = || parse_u64(v);
        match k {
            b"--state-dir" => state_dir = Some(v.to_vec()),
            b"--init-pid" => pid = Some(num()? as i32),
            b"--oom-baseline" => oom_baseline = num()?,
            b"--oom-file" => oom_file = Some(v.to_vec()),
            b"--log-path" => log_path = Some(v.to_vec()),
            b"--fd-attach" => attach = Some(num()? as i32),
            b"--fd-stdin" => stdin = Some(num()? as i32),
            b"--fd-stdout" => stdout = Some(num()? as i32),
            b"--fd-stderr" => stderr = Some(num()? as i32),
            b"--fd-pty" => pty = Some(num()? as i32),
            _ => return None,
        }
        i += 2;
    }
    let stdio = match (pty, stdout, stderr) {
        (Some(m), _, _) => Stdio::Pty(m),
        (None, Some(stdout), Some(stderr)) => Stdio::Pipes {
            stdin,
            stdout,
            stderr,
        },
        _ => return None,
    };
    Some(Config {
        state_dir: state_dir?,
        pid: pid?,
        oom_baseline,
        oom_file,
        log_path,
        attach: attach?,
        stdio,
    })
}

fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((b - b'0') as u64)?;
    }
    Some(v)
}

pub fn main(args: sys::Args) -> i32 {
    sys::set_name(b"berth-monitor");
    match args.get(1) {
        Some(b"__serve") => match parse(&args) {
            Some(cfg) => serve::serve(cfg),
            None => 2,
        },
        // `__pause --dir=DIR`: the dir only names the pod for operators.
        Some(b"__pause") => serve::pause(),
        _ => 2,
    }
}

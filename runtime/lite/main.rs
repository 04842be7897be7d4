//! `berth-monitor-serve`: the per-container monitor's steady state.
//!
//! `berth-monitor create` makes the container and then execs this binary
//! (from a memfd holding a copy embedded in berth-monitor), handing it the
//! container's stdio, the attach socket and what it needs to record the exit.
//! It is also pid 1 of a pod's shared pid namespace (`berth-monitor pin-ns
//! --pid` execs it as `berth-monitor __pause --dir=DIR`): it reaps orphans.
//! Both command lines are defined, for both sides, in
//! `src/monitor/serve_args.rs`.
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

// The argument codec and this binary's boundary, written by berth-monitor
// with the same code (the writing half is unused here).
#[allow(dead_code)]
#[path = "../src/monitor/argv.rs"]
mod argv;
#[path = "../src/monitor/attach.rs"]
mod attach;
#[path = "../src/monitor/cri_log.rs"]
mod cri_log;
mod heap;
mod nr;
#[path = "../src/monitor/rfc3339.rs"]
mod rfc3339;
mod serve;
#[allow(dead_code)]
#[path = "../src/monitor/serve_args.rs"]
mod serve_args;
mod sys;

use serve_args::ServeCommand;

#[global_allocator]
static HEAP: heap::Heap = heap::Heap::new();

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    sys::exit(70)
}

// serve.rs's names for the arguments of `__serve`.
pub use argv::parse_u64;
pub use serve_args::{ServeArgs as Config, ServeStdio as Stdio};

pub fn main(args: sys::Args) -> i32 {
    sys::set_name(b"berth-monitor");
    match ServeCommand::decode((0..args.len()).filter_map(|i| args.get(i))) {
        Ok(ServeCommand::Serve(cfg)) => serve::serve(cfg),
        Ok(ServeCommand::Pause { .. }) => serve::pause(),
        Err(_) => 2,
    }
}

//! Side-by-side latency of create → start → wait → delete of `busybox true`
//! for berth-monitor and runc (and crun when it works on this host).
//!
//! `berth-bench-runtime [--iterations N] [--monitor PATH] [--baseline PATH]`;
//! prints p50/p95 per runtime and the ratio to berth. With `--baseline`, the
//! two berth-monitor builds take turns every iteration instead (no runc), the
//! fair way to compare builds on a noisy host. Needs root and /bin/busybox. The same rows
//! appear in `berth-bench --workloads runtime`; both use
//! [`berth_runtime::bench`].

use berth_runtime::bench::{self, percentile};
use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |k: &str| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let iterations: usize = get("--iterations")
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let monitor = get("--monitor")
        .map(PathBuf::from)
        .unwrap_or_else(bench::default_monitor);
    // With a baseline: the two builds take turns every iteration (no runc).
    let results = match get("--baseline") {
        Some(b) => bench::compare_monitors(iterations, &[monitor, PathBuf::from(b)]),
        None => bench::compare(iterations, &monitor),
    };
    let results = match results {
        Ok(r) => r,
        Err(e) => {
            eprintln!("berth-bench-runtime: {e}");
            std::process::exit(1);
        }
    };
    let base = results[0].samples.as_ref().ok().map(|v| percentile(v, 50));
    println!("create+start+wait+delete of busybox true, {iterations} iterations");
    println!(
        "{:<14} {:>10} {:>10} {:>12}",
        "runtime", "p50 ms", "p95 ms", "p50 / berth"
    );
    for r in &results {
        let name = &r.runtime;
        match &r.samples {
            Ok(v) => {
                let p50 = percentile(v, 50);
                let ratio = base
                    .map(|b| p50.as_secs_f64() / b.as_secs_f64())
                    .unwrap_or(0.0);
                println!(
                    "{name:<14} {:>10.2} {:>10.2} {:>12.2}",
                    p50.as_secs_f64() * 1e3,
                    percentile(v, 95).as_secs_f64() * 1e3,
                    ratio
                );
            }
            Err(e) => println!("{name:<14} failed: {e}"),
        }
    }
}

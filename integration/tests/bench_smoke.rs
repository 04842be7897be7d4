//! A short run of the benchmark driver against berthd alone, so the driver
//! cannot rot between full benchmark runs (docs/benchmarks.md).

use std::process::Command;

use berth_integration::{berthd, command, skip, skip_if};

#[test]
fn berth_bench_runs_a_short_workload_and_prints_the_report() {
    skip_if!(skip::first(&[
        skip::not_root(),
        skip::no_registry(),
        skip::no_busybox()
    ]));
    let bin = berthd::berthd_binary().unwrap();
    let mut bench = Command::new(command::built_binary("berth-bench"));
    bench
        .args([
            "--no-containerd",
            "--iterations",
            "2",
            "--pods",
            "3",
            "--list-containers",
            "4",
            "--list-pods",
            "2",
            "--stream-mib",
            "1",
            "--workloads",
            "pull-small,pod-lifecycle,list,exec-sync,exec-stream,concurrent-pods,memory,runtime",
        ])
        .env("BERTHD", &bin);
    let stdout = command::stdout_of_success(&mut bench, "berth-bench");
    for op in [
        "PullImage",
        "RunPodSandbox",
        "CreateContainer",
        "StartContainer",
        "RemovePodSandbox",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.contains(op))
            .unwrap_or_else(|| panic!("no {op} row in:\n{stdout}"));
        assert!(line.contains("(n=2)"), "{op} row without 2 samples: {line}");
    }
    let row = |op: &str| {
        stdout
            .lines()
            .find(|l| l.contains(op))
            .unwrap_or_else(|| panic!("no {op} row in:\n{stdout}"))
            .to_string()
    };
    assert!(row("ExecSync").contains("(n=2)"), "{}", row("ExecSync"));
    for op in ["ListContainers", "ListPodSandbox"] {
        assert!(row(op).contains("(n=2)"), "{}", row(op));
    }
    // The streaming rows: round trips (2 samples each) then the 1 MiB streams.
    for op in ["Exec + SPDY session", "Exec + WebSocket session"] {
        assert!(row(op).contains("(n=2)"), "{}", row(op));
    }
    let streams: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("exec 1 MiB stdout"))
        .collect();
    assert_eq!(
        streams.len(),
        4,
        "time and MiB/s rows per transport: {stdout}"
    );
    // Three pods at once, all running, none failed, nothing left after removal.
    assert!(row("per pod run+create+start").contains("(n=3)"));
    assert!(row("wall until all run").contains(" ms"));
    let count = |op: &str| {
        let line = row(op);
        let rest = line.split_once(op).unwrap().1.trim().to_string();
        rest.split_whitespace().next().unwrap().to_string()
    };
    assert_eq!(count("errors"), "0", "{}", row("errors"));
    assert_eq!(
        count("leftovers after removal"),
        "0",
        "{}",
        row("leftovers")
    );
    // Memory: berthd plus one monitor per running container were found.
    for op in [
        "daemon RSS, idle",
        "daemon RSS, N pods",
        "RSS sum / container",
        "Pss sum / container",
        "private sum / container",
    ] {
        assert!(row(op).contains(" MiB"), "{}", row(op));
    }
    let procs: usize = count("processes counted").parse().unwrap();
    assert_eq!(
        procs,
        1 + 3,
        "berthd + 3 monitors: {}",
        row("processes counted")
    );
    // The runtime-level rows: berth-monitor has samples; runc and crun each
    // have a row, measured or with the reason they could not be.
    assert!(row("vs runc").contains("(n=2)"), "{}", row("vs runc"));
    row("vs crun");
    assert!(stdout.contains("containerd not measured (--no-containerd)"));
}

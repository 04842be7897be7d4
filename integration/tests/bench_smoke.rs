//! A short run of the benchmark driver against berthd alone, so the driver
//! cannot rot between full benchmark runs (docs/benchmarks.md).

use std::process::Command;

use berth_integration::{berthd, skip, skip_if};

#[test]
fn berth_bench_runs_a_short_workload_and_prints_the_report() {
    skip_if!(skip::first(&[
        skip::not_root(),
        skip::no_registry(),
        skip::no_busybox()
    ]));
    let bin = berthd::berthd_binary().unwrap();
    let bench = bin.with_file_name("berth-bench");
    assert!(
        bench.exists(),
        "{} missing: run `cargo build --workspace --bins`",
        bench.display()
    );
    let out = Command::new(&bench)
        .args([
            "--no-containerd",
            "--iterations",
            "2",
            "--workloads",
            "pull-small,pod-lifecycle",
        ])
        .env("BERTHD", &bin)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "berth-bench failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
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
}

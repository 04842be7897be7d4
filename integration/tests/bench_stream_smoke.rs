//! A short run of the exec streaming benchmark (`bench_stream`) against the
//! real berthd, and against a private containerd when one is installed, so the
//! workload cannot rot between full benchmark runs. With `--nocapture` it
//! prints the rows; `BERTH_BENCH_STREAM_FULL=1` runs the full-size workload
//! (20 round trips, 3 × 100 MiB) for numbers worth quoting from a release build.

use berth_integration::bench::Outcome;
use berth_integration::bench_stream::{self, ExecStreamOptions};
use berth_integration::containerd::Containerd;
use berth_integration::env::TestEnv;
use berth_integration::{skip, skip_if};
use berth_proto::v1 as cri;

fn options() -> ExecStreamOptions {
    if std::env::var_os("BERTH_BENCH_STREAM_FULL").is_some() {
        ExecStreamOptions::default()
    } else {
        ExecStreamOptions {
            round_trips: 1,
            throughput_runs: 1,
            throughput_bytes: 1_000_000,
            ..Default::default()
        }
    }
}

fn print(runtime: &str, rows: &[(String, &'static str, Outcome)]) {
    for (workload, op, o) in rows {
        println!(
            "{runtime:<10} {workload:<28} {op:<26} {}",
            o.summary(runtime)
        );
    }
}

async fn pods_left(c: &mut berth_integration::client::Cri) -> usize {
    c.runtime
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .items
        .len()
}

#[tokio::test]
async fn exec_streaming_benchmark_measures_both_transports() {
    skip_if!(skip::first(&[
        skip::not_root(),
        skip::no_registry(),
        skip::no_busybox()
    ]));
    let options = options();
    let mut env = TestEnv::start_for_pods().await.unwrap();
    let busybox = env.image("busybox");
    let rows =
        bench_stream::exec_streaming(&mut env.cri, &busybox, env.logs.path(), &options).await;
    print("berthd", &rows);
    // 2 round-trip rows, then per transport a time row and a MiB/s row.
    assert_eq!(rows.len(), 6, "{rows:?}");
    for (workload, op, o) in &rows {
        match o {
            Outcome::Samples(s) => {
                let n = if workload.starts_with("exec round trip") {
                    options.round_trips
                } else {
                    options.throughput_runs
                };
                assert_eq!(s.len(), n, "{workload} / {op}: {o:?}");
            }
            Outcome::Value(v, _) => assert!(*v > 0.0, "{workload} / {op}: {o:?}"),
            other => panic!("berthd {workload} / {op}: {other:?}"),
        }
    }
    assert_eq!(
        pods_left(&mut env.cri).await,
        0,
        "the benchmark pod is gone"
    );

    if let Some(reason) = Containerd::unavailable_reason() {
        eprintln!("containerd part skipped: {reason}");
        return;
    }
    let mut c = env
        .start_containerd()
        .await
        .unwrap()
        .client()
        .await
        .unwrap();
    c.image
        .pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: busybox.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let logs = tempfile::tempdir().unwrap();
    let crows = bench_stream::exec_streaming(&mut c, &busybox, logs.path(), &options).await;
    print("containerd", &crows);
    assert_eq!(
        crows.iter().map(|r| (&r.0, r.1)).collect::<Vec<_>>(),
        rows.iter().map(|r| (&r.0, r.1)).collect::<Vec<_>>(),
        "containerd's rows line up with berthd's"
    );
    for (workload, op, o) in &crows {
        match o {
            Outcome::Samples(s) => assert!(!s.is_empty(), "{workload} / {op}"),
            Outcome::Value(v, _) => assert!(*v > 0.0, "{workload} / {op}: {o:?}"),
            // A transport containerd's streaming server refuses is reported
            // with the transport's name and the error, not as a crash.
            Outcome::Failed(m) => assert!(
                m.starts_with("SPDY: ") || m.starts_with("WebSocket: "),
                "containerd {workload} / {op}: {m}"
            ),
            other => panic!("containerd {workload} / {op}: {other:?}"),
        }
    }
    assert_eq!(pods_left(&mut c).await, 0, "the benchmark pod is gone");
}

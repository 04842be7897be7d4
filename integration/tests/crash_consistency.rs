//! Crash consistency: berthd SIGKILLed at random points of pod lifecycles on
//! the CNI bridge (inside RunPodSandbox, CreateContainer, StopPodSandbox, a
//! pull, …), restarted, and the client retrying as a kubelet does: nothing
//! acknowledged lost, nothing stale listed, nothing leaked. See
//! `berth_integration::crash` for the rules; `berth-bench --workloads crash`
//! runs the same with many more kills.

use std::time::Duration;

use berth_integration::crash::{self, CrashOptions};
use berth_integration::env::TestEnv;
use berth_integration::{skip, skip_if};

/// Kills per run: the seed is printed, and `BERTH_CRASH_SEED` replays a run.
const KILLS: usize = 50;

#[tokio::test]
async fn fifty_kills_at_random_points_lose_nothing_list_nothing_stale_and_leak_nothing() {
    skip_if!(skip::no_bridge_pod_env());
    let mut env = TestEnv::start_for_pods_on_bridge(vec![]).await.unwrap();
    let pulled = env.pull("layered").await.unwrap();
    let seed = std::env::var("BERTH_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        });
    eprintln!("crash run seed {seed} (BERTH_CRASH_SEED={seed} replays it)");
    let options = CrashOptions {
        kills: KILLS,
        seed,
        max_delay: Duration::from_millis(60),
        busybox: env.image("busybox"),
        pulled,
        log_dir: env.logs.path().to_path_buf(),
    };
    let report = crash::run(&mut env.berthd, env.bridge.as_ref(), &options)
        .await
        .unwrap();
    eprintln!("{report:#?}");
    assert_eq!(report.kills, KILLS);
    assert!(
        report.mid_call > 0,
        "no kill landed inside a call: {report:#?}"
    );
    assert_eq!(report.lost, Vec::<String>::new(), "lost (seed {seed})");
    assert_eq!(report.stale, Vec::<String>::new(), "stale (seed {seed})");
    assert_eq!(report.leaked, Vec::<String>::new(), "leaked (seed {seed})");
}

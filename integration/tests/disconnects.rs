//! Clients that go away mid-call cost berthd nothing: 1000 calls abandoned at
//! random points (ExecSync of a long command, an exec streaming session, a
//! pull, lists) leave no process in the container, no child of berthd and no
//! file descriptor behind once berthd has noticed.

use std::time::{Duration, Instant};

use berth_integration::calls::exec_sync;
use berth_integration::env::TestEnv;
use berth_integration::{calls, skip, skip_if};
use berth_proto::v1::*;
use berth_shim::streaming::client::{run_and_collect, Transport};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// Abandoned calls of each of the four kinds.
const PER_KIND: usize = 250;

/// File descriptors berthd may hold above its warmed-up count: pooled
/// registry and client connections come and go; a per-call leak would be
/// hundreds.
const FD_SLACK: usize = 8;

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Processes whose parent is `pid`, with their command lines.
fn children(pid: u32) -> Vec<String> {
    let mut out = Vec::new();
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        let stat = std::fs::read_to_string(p.path().join("stat")).unwrap_or_default();
        // The ppid is the second field after the parenthesised command.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|s| s.parse::<u32>().ok());
        if ppid == Some(pid) {
            let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
            out.push(String::from_utf8_lossy(&cmd).replace('\0', " "));
        }
    }
    out
}

/// Runs `call` and drops it after `after` (a client that went away).
async fn abandon<F: std::future::Future>(call: F, after: Duration) {
    let _ = tokio::time::timeout(after, call).await;
}

#[tokio::test]
async fn a_thousand_abandoned_calls_leave_no_process_fd_or_child_behind() {
    skip_if!(skip::no_pod_env());
    let mut env = TestEnv::start_for_pods().await.unwrap();
    let small = env.pull("layered").await.unwrap();
    let (_pod, id) = env
        .run_busybox_pod("abandoned", "exec sleep 7200", false)
        .await
        .unwrap();
    let pid = env.berthd.pid().unwrap();
    let mut cri = env.cri.clone();
    // Warm up every path once to the end, so pools and caches are in the baseline.
    exec_sync(&mut cri, &id, &["true"], 10).await.unwrap();
    let url = calls::exec_url(&mut cri, &id, &["true"], false, false).await;
    run_and_collect(&url, Transport::Spdy, None, true, true, false)
        .await
        .unwrap();
    calls::list_containers(&mut cri, None).await;
    let fds_before = fd_count(pid);
    let children_before = children(pid);

    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut random = |max_ms: u64| Duration::from_micros(rng.next_u64() % (max_ms * 1000 + 1));
    for i in 0..PER_KIND {
        // Every tenth exec is abandoned long after `sleep 3600` has started; the
        // rest anywhere from before the helper runs to just after.
        let mut delay = |max_ms: u64| {
            if i % 10 == 0 {
                Duration::from_millis(1500)
            } else {
                random(max_ms)
            }
        };
        let mut c = cri.clone();
        let req = ExecSyncRequest {
            container_id: id.clone(),
            cmd: vec!["sleep".into(), "3600".into()],
            timeout: 0,
        };
        abandon(c.runtime.exec_sync(req), delay(200)).await;

        let url = calls::exec_url(&mut cri, &id, &["sleep", "3600"], false, false).await;
        let transport = if i % 2 == 0 {
            Transport::Spdy
        } else {
            Transport::WebSocket
        };
        abandon(
            run_and_collect(&url, transport, None, true, true, false),
            delay(200),
        )
        .await;

        let _ = cri
            .image
            .remove_image(RemoveImageRequest {
                image: Some(ImageSpec {
                    image: small.clone(),
                    ..Default::default()
                }),
            })
            .await;
        let mut c = cri.clone();
        let req = PullImageRequest {
            image: Some(ImageSpec {
                image: small.clone(),
                ..Default::default()
            }),
            ..Default::default()
        };
        abandon(c.image.pull_image(req), random(30)).await;

        let mut c = cri.clone();
        abandon(
            c.runtime
                .list_containers(ListContainersRequest { filter: None }),
            random(2),
        )
        .await;
    }

    // berthd notices a cancelled call at once, but a killed process takes a
    // moment to be reaped: wait for the condition, not for a time.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ps = exec_sync(&mut cri, &id, &["ps", "-o", "pid,args"], 10)
            .await
            .unwrap();
        let ps = String::from_utf8_lossy(&ps.stdout).to_string();
        let sleeps = ps.lines().filter(|l| l.contains("sleep 3600")).count();
        let fds = fd_count(pid);
        let kids = children(pid);
        if sleeps == 0 && fds <= fds_before + FD_SLACK && kids.len() <= children_before.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after {} abandoned calls: {sleeps} `sleep 3600` still in the container:\n{ps}\n\
             berthd fds {fds} (before {fds_before}), children {kids:?} (before {children_before:?})",
            4 * PER_KIND
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // And berthd still serves, and the image can still be pulled whole.
    env.pull("layered").await.unwrap();
    let r = exec_sync(&mut cri, &id, &["echo", "fine"], 10)
        .await
        .unwrap();
    assert_eq!(r.stdout, b"fine\n");
}

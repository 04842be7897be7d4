//! What a kubelet and the CRI contract need beyond the happy path, through
//! gRPC against the real berthd: hugepage limits on hosts without a usable
//! hugetlb controller, stops of what is already gone, a pull past its
//! deadline, and ExecSync timeouts and cancellations that leave nothing
//! running in the container.

use std::path::Path;
use std::time::{Duration, Instant};

use berth_integration::berthd::BerthdOptions;
use berth_integration::calls::{self, exec_sync};
use berth_integration::env::{container_config, TestEnv, TestEnvOptions};
use berth_integration::{skip, skip_if, wait};
use berth_proto::v1::*;

fn unknown_id() -> String {
    "0123456789abcdef".repeat(4)
}

#[tokio::test]
async fn stopping_what_does_not_exist_or_was_removed_is_ok() {
    skip_if!(skip::no_pod_env());
    let mut env = TestEnv::start_for_pods().await.unwrap();
    let stop_ctr = |id: String| StopContainerRequest {
        container_id: id,
        timeout: 0,
    };
    let stop_pod = |id: String| StopPodSandboxRequest { pod_sandbox_id: id };
    env.cri
        .runtime
        .stop_container(stop_ctr(unknown_id()))
        .await
        .unwrap();
    env.cri
        .runtime
        .stop_pod_sandbox(stop_pod(unknown_id()))
        .await
        .unwrap();
    let empty = env
        .cri
        .runtime
        .stop_container(stop_ctr(String::new()))
        .await
        .unwrap_err();
    assert_eq!(empty.code(), tonic::Code::InvalidArgument, "{empty:?}");

    let (pod, ctr) = env
        .run_busybox_pod("stopgone", "sleep 300", false)
        .await
        .unwrap();
    calls::stop_container(&mut env.cri, &ctr, 0).await;
    calls::remove_container(&mut env.cri, &ctr).await;
    // The kubelet retries a stop after the container is gone.
    env.cri
        .runtime
        .stop_container(stop_ctr(ctr.clone()))
        .await
        .unwrap();
    env.remove_pod(&pod).await.unwrap();
    env.cri
        .runtime
        .stop_pod_sandbox(stop_pod(pod.clone()))
        .await
        .unwrap();
    // Still gone: a stop made nothing up.
    let st = env
        .cri
        .runtime
        .container_status(ContainerStatusRequest {
            container_id: ctr,
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), tonic::Code::NotFound);
}

/// What a kubelet sends on every container: a zero limit per page size.
fn kubelet_hugepages() -> LinuxContainerResources {
    LinuxContainerResources {
        cpu_shares: 2,
        hugepage_limits: ["2MB", "1GB"]
            .iter()
            .map(|p| HugepageLimit {
                page_size: p.to_string(),
                limit: 0,
            })
            .collect(),
        ..Default::default()
    }
}

async fn create_with_hugepages(env: &mut TestEnv, name: &str) -> Result<String, tonic::Status> {
    let pod_config = env.pod_config(name);
    let pod = env.run_pod(&pod_config).await.unwrap();
    let mut config = container_config(name, &env.image("busybox"), &["sleep", "300"]);
    config.linux = Some(LinuxContainerConfig {
        resources: Some(kubelet_hugepages()),
        ..Default::default()
    });
    let created = env.create_container(&pod, &pod_config, config).await;
    if let Ok(id) = &created {
        calls::start_container(&mut env.cri, id).await;
        let st = calls::container_status(&mut env.cri, id).await;
        assert_eq!(st.state, ContainerState::ContainerRunning as i32, "{st:?}");
    }
    env.remove_pod(&pod).await.unwrap();
    created
}

#[tokio::test]
async fn hugepage_limits_without_a_usable_hugetlb_controller_are_tolerated_unless_configured_not_to_be(
) {
    skip_if!(skip::no_pod_env());
    let root = Path::new("/sys/fs/cgroup");
    let layout = berth_runtime::cgroups::detect_layout(root).unwrap();
    let usable = berth_runtime::cgroups::hugetlb_available(layout, root);

    // Default config: the container runs whatever the host has.
    let mut env = TestEnv::start_for_pods().await.unwrap();
    create_with_hugepages(&mut env, "huge-default")
        .await
        .unwrap();
    drop(env);

    let mut strict = TestEnv::start_with(TestEnvOptions {
        berthd: BerthdOptions::default().config("tolerate_missing_hugetlb_controller = false\n"),
        ..TestEnvOptions::for_pods()
    })
    .await
    .unwrap();
    let got = create_with_hugepages(&mut strict, "huge-strict").await;
    if usable {
        got.unwrap();
    } else {
        // This host (hybrid, hugetlb only in the cgroup2 tree): refused, naming why.
        let e = got.unwrap_err();
        assert!(e.message().contains("hugetlb"), "{e:?}");
    }
}

#[tokio::test]
async fn a_pull_past_the_clients_deadline_answers_deadline_exceeded() {
    skip_if!(skip::no_pod_env());
    let mut env = TestEnv::start().await.unwrap();
    // A "registry" on loopback that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let mut req = tonic::Request::new(PullImageRequest {
        image: Some(ImageSpec {
            image: format!("127.0.0.1:{port}/stuck/image:1"),
            ..Default::default()
        }),
        auth: None,
        sandbox_config: None,
    });
    req.set_timeout(Duration::from_secs(2));
    let e = env.cri.image.pull_image(req).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::DeadlineExceeded, "{e:?}");
    hold.abort();
}

/// The `args` of every process in the container, through ExecSync.
async fn processes(cri: &mut berth_integration::client::Cri, id: &str) -> String {
    let out = exec_sync(cri, id, &["ps"], 0).await.unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until no process of the exec (the `sleep 300` and `sleep 301` it
/// started) is left in the container, or fails with the last `ps`.
async fn wait_exec_gone(cri: &mut berth_integration::client::Cri, id: &str) {
    wait::until(
        "the exec's processes to end",
        Duration::from_secs(20),
        async || {
            let ps = processes(cri, id).await;
            wait::check(!ps.contains("sleep 30"), ps)
        },
    )
    .await
}

// The exec'd shell starts a background child and a foreground one: killing
// only the exec'd process would leave both running.
const TREE: &[&str] = &["sh", "-c", "sleep 300 & sleep 301; echo never"];

#[tokio::test]
async fn exec_sync_timeout_and_cancel_kill_the_whole_exec_tree() {
    skip_if!(skip::no_pod_env());
    let mut env = TestEnv::start_for_pods().await.unwrap();
    // A shell as PID 1 reaps what the kill orphans, as an init would.
    let (pod, ctr) = env
        .run_busybox_pod(
            "exectree",
            "trap 'exit 0' TERM; while true; do sleep 1; done",
            false,
        )
        .await
        .unwrap();

    let started = Instant::now();
    let e = exec_sync(&mut env.cri, &ctr, TREE, 2).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(e.code(), tonic::Code::DeadlineExceeded, "{e:?}");
    // The CRI contract: the call ends within its timeout plus a second.
    assert!(took < Duration::from_secs(3), "answered after {took:?}");
    wait_exec_gone(&mut env.cri, &ctr).await;

    // A client that gives up (no server-side timeout) kills the tree too.
    let mut cri = env.cri.clone();
    let id = ctr.clone();
    let call = tokio::spawn(async move { exec_sync(&mut cri, &id, TREE, 0).await });
    wait::until("the exec to start", Duration::from_secs(20), async || {
        let ps = processes(&mut env.cri, &ctr).await;
        wait::check(ps.contains("sleep 301"), ps)
    })
    .await;
    call.abort();
    let _ = call.await;
    wait_exec_gone(&mut env.cri, &ctr).await;

    // The container itself is untouched.
    let st = calls::container_status(&mut env.cri, &ctr).await;
    assert_eq!(st.state, ContainerState::ContainerRunning as i32);
    env.remove_pod(&pod).await.unwrap();
}

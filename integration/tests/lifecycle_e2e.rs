//! Pod sandboxes and containers end to end: the real berthd, a real local
//! registry, the busybox test images pulled over gRPC, and real namespaces,
//! cgroups and overlay mounts, driven the way kubelet drives a runtime.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_integration::berthd::Berthd;
use berth_integration::calls::{
    self, container_status, create_container, exec_sync, list_containers, list_pods, pod_status,
    remove_container, remove_pod, run_container, run_pod, start_container, stop_container,
    stop_pod, teardown_pod, wait_exited,
};
use berth_integration::client::Cri;
use berth_integration::env::{self, TestEnv};
use berth_integration::{skip, skip_if, wait};
use berth_proto::v1::*;

/// A registry with the test images, a berthd that has pulled them, a client.
struct Env {
    cri: Cri,
    busybox: String,
    configured: String,
    base: TestEnv,
}

async fn env() -> Env {
    let mut base = TestEnv::start_for_pods().await.unwrap();
    let configured = base.pull("configured").await.unwrap();
    Env {
        cri: base.cri.clone(),
        busybox: base.image("busybox"),
        configured,
        base,
    }
}

fn pod_config(env: &Env, name: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(calls::namespaces(
                    NamespaceMode::Pod,
                    NamespaceMode::Container,
                )),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..env.base.pod_config(name)
    }
}

fn container_config(name: &str, image: &str, command: &[&str]) -> ContainerConfig {
    ContainerConfig {
        log_path: format!("{name}/0.log"),
        linux: Some(LinuxContainerConfig {
            resources: None,
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(calls::namespaces(
                    NamespaceMode::Pod,
                    NamespaceMode::Container,
                )),
                ..Default::default()
            }),
        }),
        ..env::container_config(name, image, command)
    }
}

/// The CRI log lines' payloads of one stream (`<time> <stream> <tag> <line>`).
fn log_lines(path: &Path, stream: &str) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(4, ' ');
            let (_, s, _, msg) = (
                parts.next()?,
                parts.next()?,
                parts.next()?,
                parts.next().unwrap_or(""),
            );
            (s == stream).then(|| msg.to_string())
        })
        .collect()
}

/// Stops and removes `ids[0]` (a pod), then asserts that neither it nor any
/// of the other `ids` (its containers) left anything behind.
async fn teardown_leaving_nothing(cri: &mut Cri, berthd: &Berthd, ids: &[&str]) {
    teardown_pod(cri, ids[0]).await;
    assert_eq!(berthd.leftovers(ids), Vec::<String>::new());
}

#[tokio::test]
async fn pod_and_container_run_exec_stop_and_remove_leaving_nothing_behind() {
    skip_if!(skip::no_pod_env());
    let mut env = env().await;
    let mut cri = env.cri.clone();
    let mut events = cri
        .runtime
        .get_container_events(GetEventsRequest {})
        .await
        .unwrap()
        .into_inner();

    let pc = pod_config(&env, "web");
    let pod = run_pod(&mut cri, &pc).await;
    assert_eq!(pod.len(), 64);
    let ps = cri
        .runtime
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let st = ps.status.unwrap();
    assert_eq!(st.state, PodSandboxState::SandboxReady as i32);
    assert_eq!(st.metadata.unwrap().name, "web");
    assert_eq!(st.labels["app"], "web");
    assert!(ps.info.contains_key("info"));
    assert!(env
        .base
        .berthd
        .state_dir()
        .join("ns")
        .join(&pod)
        .join("net")
        .exists());

    let c = create_container(
        &mut cri,
        &pod,
        &pc,
        container_config(
            "app",
            &env.busybox,
            &["sh", "-c", "echo started; hostname; exec sleep 3600"],
        ),
    )
    .await;
    let s = container_status(&mut cri, &c).await;
    assert_eq!(s.state, ContainerState::ContainerCreated as i32);
    assert!(s.image_id.starts_with("sha256:"), "{}", s.image_id);
    start_container(&mut cri, &c).await;
    let s = container_status(&mut cri, &c).await;
    assert_eq!(s.state, ContainerState::ContainerRunning as i32);
    assert!(s.started_at >= s.created_at && s.created_at > 0);
    // The writable layer is a volatile overlay (berthd's default): its
    // unmount at removal does not sync the whole upper filesystem.
    let rootfs = env
        .base
        .berthd
        .root_dir()
        .join("containers")
        .join(&c)
        .join("rootfs");
    let mount = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(rootfs.to_str().unwrap()))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(
        mount.contains(" overlay ") && mount.contains("volatile"),
        "rootfs mount: {mount:?}"
    );

    // ExecSync: output, exit codes, the container's hostname, timeouts.
    let r = exec_sync(
        &mut cri,
        &c,
        &["sh", "-c", "echo out; echo err >&2; hostname"],
        10,
    )
    .await
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout), "out\nweb\n");
    assert_eq!(String::from_utf8_lossy(&r.stderr), "err\n");
    assert_eq!(r.exit_code, 0);
    assert_eq!(
        exec_sync(&mut cri, &c, &["sh", "-c", "exit 3"], 10)
            .await
            .unwrap()
            .exit_code,
        3
    );
    let t0 = Instant::now();
    let e = exec_sync(&mut cri, &c, &["sleep", "30"], 1)
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::DeadlineExceeded, "{e}");
    assert!(t0.elapsed() < Duration::from_secs(10));

    // The streamed listings carry the same items as the unary ones.
    let mut pages = cri
        .runtime
        .stream_pod_sandboxes(StreamPodSandboxesRequest {
            filter: Some(PodSandboxFilter {
                id: pod[..12].into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let mut streamed = Vec::new();
    while let Some(page) = pages.message().await.unwrap() {
        streamed.extend(page.pod_sandboxes.into_iter().map(|p| p.id));
    }
    assert_eq!(streamed, std::slice::from_ref(&pod));
    let mut pages = cri
        .runtime
        .stream_containers(StreamContainersRequest { filter: None })
        .await
        .unwrap()
        .into_inner();
    let mut streamed = Vec::new();
    while let Some(page) = pages.message().await.unwrap() {
        streamed.extend(page.containers.into_iter().map(|c| c.id));
    }
    assert_eq!(streamed, std::slice::from_ref(&c));

    // Listing with filters.
    let lister = cri.clone();
    let list = |f: ContainerFilter| {
        let mut cri = lister.clone();
        async move { list_containers(&mut cri, Some(f)).await }
    };
    assert_eq!(
        list(ContainerFilter {
            id: c[..8].into(),
            ..Default::default()
        })
        .await
        .len(),
        1
    );
    assert_eq!(
        list(ContainerFilter {
            pod_sandbox_id: pod.clone(),
            ..Default::default()
        })
        .await
        .len(),
        1
    );
    assert_eq!(
        list(ContainerFilter {
            pod_sandbox_id: "ffff".into(),
            ..Default::default()
        })
        .await
        .len(),
        0
    );
    let exited = ContainerFilter {
        state: Some(ContainerStateValue {
            state: ContainerState::ContainerExited as i32,
        }),
        ..Default::default()
    };
    assert_eq!(list(exited.clone()).await.len(), 0);

    // The log got the container's output.
    let log = PathBuf::from(&pc.log_directory).join("app/0.log");
    assert_eq!(s.log_path, log.display().to_string());
    let deadline = Instant::now() + Duration::from_secs(5);
    while log_lines(&log, "stdout") != ["started", "web"] && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(log_lines(&log, "stdout"), ["started", "web"]);

    // Stop: sleep as pid 1 ignores SIGTERM, so the grace runs out and SIGKILL ends it.
    // Status polls are answered during the grace period, not after it.
    let t0 = Instant::now();
    let stopper = {
        let mut cri = cri.clone();
        let c = c.clone();
        tokio::spawn(async move { stop_container(&mut cri, &c, 2).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let polled = Instant::now();
    let during = container_status(&mut cri, &c).await;
    assert!(
        polled.elapsed() < Duration::from_millis(500),
        "{:?}",
        polled.elapsed()
    );
    assert_eq!(during.state, ContainerState::ContainerRunning as i32);
    stopper.await.unwrap();
    assert!(
        t0.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        t0.elapsed()
    );
    let s = container_status(&mut cri, &c).await;
    assert_eq!(s.state, ContainerState::ContainerExited as i32);
    assert_eq!(s.exit_code, 137);
    assert_eq!(s.reason, "Error");
    assert!(s.finished_at >= s.started_at);
    assert_eq!(list(exited).await.len(), 1);
    // Stopping again is fine.
    stop_container(&mut cri, &c, 0).await;

    remove_container(&mut cri, &c).await;
    let e = cri
        .runtime
        .container_status(ContainerStatusRequest {
            container_id: c.clone(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    // Removing an unknown container succeeds.
    remove_container(&mut cri, &c).await;

    stop_pod(&mut cri, &pod).await;
    let st = pod_status(&mut cri, &pod).await;
    assert_eq!(st.state, PodSandboxState::SandboxNotready as i32);
    // Stop is idempotent.
    stop_pod(&mut cri, &pod).await;
    remove_pod(&mut cri, &pod).await;
    remove_pod(&mut cri, &pod).await;
    let pods = list_pods(&mut cri).await;
    assert!(pods.is_empty(), "{pods:?}");
    assert_eq!(env.base.berthd.leftovers(&[&pod, &c]), Vec::<String>::new());

    // Events, in order: created, started, stopped, deleted.
    let mut kinds = Vec::new();
    while kinds.len() < 4 {
        let ev = tokio::time::timeout(Duration::from_secs(5), events.message())
            .await
            .expect("event")
            .unwrap()
            .unwrap();
        assert_eq!(ev.container_id, c);
        kinds.push(ev.container_event_type);
    }
    assert_eq!(
        kinds,
        [
            ContainerEventType::ContainerCreatedEvent as i32,
            ContainerEventType::ContainerStartedEvent as i32,
            ContainerEventType::ContainerStoppedEvent as i32,
            ContainerEventType::ContainerDeletedEvent as i32
        ]
    );
    env.cri = cri;
}

#[tokio::test]
async fn containers_of_a_pod_share_its_network_and_ipc() {
    skip_if!(skip::no_pod_env());
    let env = env().await;
    let mut cri = env.cri.clone();
    let pc = pod_config(&env, "shared");
    let pod = run_pod(&mut cri, &pc).await;
    let server = run_container(
        &mut cri,
        &pod,
        &pc,
        container_config(
            "server",
            &env.busybox,
            &["sh", "-c", "mkdir -p /www && echo shared-net > /www/index.html && echo ipc > /dev/shm/mark && exec httpd -f -p 8080 -h /www"],
        ),
    )
    .await;
    let client = create_container(
        &mut cri,
        &pod,
        &pc,
        container_config(
            "client",
            &env.busybox,
            &["sh", "-c", "i=0; while [ $i -lt 100 ]; do wget -qO- http://127.0.0.1:8080/ && cat /dev/shm/mark && exit 0; i=$((i+1)); sleep 0.1; done; exit 1"],
        ),
    )
    .await;
    start_container(&mut cri, &client).await;
    let s = wait_exited(&mut cri, &client, Duration::from_secs(30)).await;
    let log = PathBuf::from(&pc.log_directory).join("client/0.log");
    assert_eq!(
        (s.exit_code, s.reason.as_str()),
        (0, "Completed"),
        "log: {:?}",
        std::fs::read_to_string(&log)
    );
    assert_eq!(log_lines(&log, "stdout"), ["shared-net", "ipc"]);

    // Same namespaces, seen from inside: a second live container.
    let peer = run_container(
        &mut cri,
        &pod,
        &pc,
        container_config("peer", &env.busybox, &["sleep", "3600"]),
    )
    .await;
    let nser = cri.clone();
    let ns = |id: String| {
        let mut cri = nser.clone();
        async move {
            let r = exec_sync(
                &mut cri,
                &id,
                &[
                    "ls",
                    "-l",
                    "/proc/self/ns/net",
                    "/proc/self/ns/ipc",
                    "/proc/self/ns/uts",
                    "/proc/self/ns/mnt",
                ],
                10,
            )
            .await
            .unwrap();
            String::from_utf8_lossy(&r.stdout)
                .lines()
                .map(|l| l.rsplit(' ').next().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    let (a, b) = (ns(server.clone()).await, ns(peer.clone()).await);
    // `ls` sorts its arguments: ipc, mnt, net, uts.
    assert_eq!(a.len(), 4, "{a:?}");
    assert!(
        a[0].starts_with("ipc:") && a[3].starts_with("uts:"),
        "{a:?}"
    );
    assert_eq!(
        (&a[0], &a[2], &a[3]),
        (&b[0], &b[2], &b[3]),
        "net, ipc and uts are the pod's"
    );
    assert_ne!(a[1], b[1], "each container has its own mount namespace");

    // Stats come from the live containers' cgroups.
    let st = cri
        .runtime
        .container_stats(ContainerStatsRequest {
            container_id: server.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    assert!(st.memory.unwrap().working_set_bytes.unwrap().value > 0);
    assert!(st.cpu.unwrap().usage_core_nano_seconds.unwrap().value > 0);
    assert!(
        st.writable_layer.unwrap().inodes_used.unwrap().value > 0,
        "server wrote /www"
    );
    let ps = cri
        .runtime
        .list_pod_sandbox_stats(ListPodSandboxStatsRequest {
            filter: Some(PodSandboxStatsFilter {
                id: pod.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .stats;
    assert_eq!(ps.len(), 1);
    let linux = ps[0].linux.clone().unwrap();
    let mut ids: Vec<_> = linux
        .containers
        .iter()
        .map(|c| c.attributes.clone().unwrap().id)
        .collect();
    ids.sort();
    let mut want = vec![server.clone(), peer.clone()];
    want.sort();
    assert_eq!(ids, want, "the exited client has no stats");
    assert!(linux.process.unwrap().process_count.unwrap().value >= 2);

    teardown_leaving_nothing(&mut cri, &env.base.berthd, &[&pod, &server, &client, &peer]).await;
}

#[tokio::test]
async fn image_entrypoint_cmd_user_workdir_and_env_merge_with_the_request() {
    skip_if!(skip::no_pod_env());
    let env = env().await;
    let mut cri = env.cri.clone();
    let pc = pod_config(&env, "merge");
    let pod = run_pod(&mut cri, &pc).await;
    // No command and no args: the image's ENTRYPOINT + CMD (`sh -c "echo hello"`).
    let plain = run_container(
        &mut cri,
        &pod,
        &pc,
        container_config("plain", &env.configured, &[]),
    )
    .await;
    let s = wait_exited(&mut cri, &plain, Duration::from_secs(20)).await;
    assert_eq!(s.exit_code, 0);
    // The image's USER and STOPSIGNAL are what the status reports.
    assert_eq!(s.user.clone().unwrap().linux.unwrap().uid, 1000, "{s:?}");
    assert_eq!(s.stop_signal, Signal::Sigquit as i32);
    assert_eq!(
        log_lines(
            &PathBuf::from(&pc.log_directory).join("plain/0.log"),
            "stdout"
        ),
        ["hello"]
    );
    // Args only: they replace CMD and go to the image's ENTRYPOINT.
    let mut cfg = container_config("args", &env.configured, &[]);
    cfg.args = vec!["id -u; pwd; echo $FOO $EXTRA".into()];
    cfg.envs = vec![KeyValue {
        key: "EXTRA".into(),
        value: "x".into(),
    }];
    let args = run_container(&mut cri, &pod, &pc, cfg).await;
    let s = wait_exited(&mut cri, &args, Duration::from_secs(20)).await;
    assert_eq!(s.exit_code, 0);
    assert_eq!(
        log_lines(
            &PathBuf::from(&pc.log_directory).join("args/0.log"),
            "stdout"
        ),
        ["1000", "/work", "bar x"]
    );
    teardown_leaving_nothing(&mut cri, &env.base.berthd, &[&pod, &plain, &args]).await;
}

#[tokio::test]
async fn a_container_killed_by_its_memory_limit_reports_oomkilled() {
    skip_if!(skip::no_pod_env());
    let env = env().await;
    let mut cri = env.cri.clone();
    let pc = pod_config(&env, "oom");
    let pod = run_pod(&mut cri, &pc).await;
    let mut cfg = container_config(
        "hog",
        &env.busybox,
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=128M", "count=1"],
    );
    cfg.linux.as_mut().unwrap().resources = Some(LinuxContainerResources {
        memory_limit_in_bytes: 32 << 20,
        memory_swap_limit_in_bytes: 32 << 20,
        ..Default::default()
    });
    let c = run_container(&mut cri, &pod, &pc, cfg).await;
    let s = wait_exited(&mut cri, &c, Duration::from_secs(30)).await;
    assert_eq!(s.reason, "OOMKilled", "{s:?}");
    assert_eq!(s.exit_code, 137);
    teardown_leaving_nothing(&mut cri, &env.base.berthd, &[&pod, &c]).await;
}

#[tokio::test]
async fn containers_survive_kill9_and_exits_while_berthd_is_down_are_recovered() {
    skip_if!(skip::no_pod_env());
    let mut env = env().await;
    let mut cri = env.cri.clone();
    let pc = pod_config(&env, "crash");
    let pod = run_pod(&mut cri, &pc).await;
    let long = run_container(
        &mut cri,
        &pod,
        &pc,
        container_config("long", &env.busybox, &["sleep", "3600"]),
    )
    .await;
    let short = create_container(
        &mut cri,
        &pod,
        &pc,
        container_config("short", &env.busybox, &["sh", "-c", "sleep 2; exit 7"]),
    )
    .await;
    start_container(&mut cri, &short).await;
    let created = create_container(
        &mut cri,
        &pod,
        &pc,
        container_config("idle", &env.busybox, &["true"]),
    )
    .await;

    env.base.berthd.kill9().unwrap();
    // The monitor records the exit while berthd is down.
    let exit_file = env
        .base
        .berthd
        .state_dir()
        .join("c")
        .join(&short)
        .join("exit.json");
    wait::until_now("short's exit recorded", Duration::from_secs(30), || {
        wait::check(exit_file.exists(), &exit_file)
    })
    .await;
    env.base.berthd.restart().await.unwrap();
    let mut cri = env.base.berthd.client().await.unwrap();

    let s = container_status(&mut cri, &long).await;
    assert_eq!(s.state, ContainerState::ContainerRunning as i32, "{s:?}");
    let s = container_status(&mut cri, &short).await;
    assert_eq!(s.state, ContainerState::ContainerExited as i32, "{s:?}");
    assert_eq!((s.exit_code, s.reason.as_str()), (7, "Error"));
    assert!(s.finished_at > s.started_at);
    assert_eq!(
        container_status(&mut cri, &created).await.state,
        ContainerState::ContainerCreated as i32
    );
    // The survivors are still fully usable: exec, start, name reservations.
    let r = exec_sync(&mut cri, &long, &["echo", "alive"], 10)
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout), "alive\n");
    // The pod's pinned namespaces outlived berthd: a new container joins them.
    let late = run_container(
        &mut cri,
        &pod,
        &pc,
        container_config("late", &env.busybox, &["sleep", "3600"]),
    )
    .await;
    let net = |id: String| {
        let mut cri = cri.clone();
        async move {
            let r = exec_sync(&mut cri, &id, &["ls", "-l", "/proc/self/ns/net"], 10)
                .await
                .unwrap();
            String::from_utf8_lossy(&r.stdout)
                .trim()
                .rsplit(' ')
                .next()
                .unwrap()
                .to_string()
        }
    };
    let (a, b) = (net(long.clone()).await, net(late.clone()).await);
    assert!(a.starts_with("net:"), "{a}");
    assert_eq!(a, b);
    start_container(&mut cri, &created).await;
    assert_eq!(
        wait_exited(&mut cri, &created, Duration::from_secs(20))
            .await
            .exit_code,
        0
    );
    let dup = cri
        .runtime
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(container_config("long", &env.busybox, &["true"])),
            sandbox_config: Some(pc.clone()),
        })
        .await
        .unwrap_err();
    assert_eq!(dup.code(), tonic::Code::AlreadyExists, "{dup}");
    teardown_leaving_nothing(
        &mut cri,
        &env.base.berthd,
        &[&pod, &long, &short, &created, &late],
    )
    .await;
}

#[tokio::test]
async fn duplicate_names_are_already_exists_and_a_concurrent_retry_gets_the_first_id() {
    skip_if!(skip::no_pod_env());
    let env = env().await;
    let mut cri = env.cri.clone();
    let pc = pod_config(&env, "dup");
    // Two identical RunPodSandbox calls at once, as a kubelet retry of a slow call.
    let (a, b) = tokio::join!(
        {
            let mut c = cri.clone();
            let pc = pc.clone();
            async move { run_pod(&mut c, &pc).await }
        },
        {
            let mut c = cri.clone();
            let pc = pc.clone();
            async move { run_pod(&mut c, &pc).await }
        }
    );
    assert_eq!(a, b);
    let pod = a;
    let e = cri
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pc.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::AlreadyExists);
    assert!(e.message().contains(&pod), "{e}");

    // The same for CreateContainer: a concurrent retry gets the first call's id.
    let (c, c_retry) = tokio::join!(
        {
            let (mut cri, pod, pc) = (cri.clone(), pod.clone(), pc.clone());
            let cfg = container_config("app", &env.busybox, &["true"]);
            async move { create_container(&mut cri, &pod, &pc, cfg).await }
        },
        {
            let (mut cri, pod, pc) = (cri.clone(), pod.clone(), pc.clone());
            let cfg = container_config("app", &env.busybox, &["true"]);
            async move { create_container(&mut cri, &pod, &pc, cfg).await }
        }
    );
    assert_eq!(c, c_retry);
    let e = cri
        .runtime
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(container_config("app", &env.busybox, &["true"])),
            sandbox_config: Some(pc.clone()),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::AlreadyExists);
    assert!(e.message().contains(&c), "{e}");
    // After removal the name is free again.
    remove_container(&mut cri, &c).await;
    let c2 = create_container(
        &mut cri,
        &pod,
        &pc,
        container_config("app", &env.busybox, &["true"]),
    )
    .await;
    assert_ne!(c, c2);
    teardown_leaving_nothing(&mut cri, &env.base.berthd, &[&pod, &c, &c2]).await;
}

#[tokio::test]
async fn malformed_requests_are_invalid_argument_naming_the_field_and_leave_nothing() {
    skip_if!(skip::no_pod_env());
    let env = env().await;
    let mut cri = env.cri.clone();
    let mut bad = pod_config(&env, "bad");
    bad.metadata.as_mut().unwrap().uid.clear();
    let e = cri
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(bad),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("config.metadata.uid"), "{e}");
    let e = cri
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: None,
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().starts_with("config"), "{e}");

    // A pod whose namespaces cannot be set up (a sysctl this kernel lacks) is
    // rolled back completely: no pins, no shm mount, no directory, no record.
    let mut broken = pod_config(&env, "good");
    broken
        .linux
        .as_mut()
        .unwrap()
        .sysctls
        .insert("net.ipv4.berth_no_such_sysctl".into(), "1".into());
    let e = cri
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(broken),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert!(e.message().contains("berth_no_such_sysctl"), "{e}");
    for sub in ["ns", "pods"] {
        let left: Vec<_> = std::fs::read_dir(env.base.berthd.state_dir().join(sub))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{sub}: {left:?}");
    }
    assert_eq!(env.base.berthd.leftovers(&[]), Vec::<String>::new());

    // The failed call freed the name.
    let pc = pod_config(&env, "good");
    let pod = run_pod(&mut cri, &pc).await;
    let creator = cri.clone();
    let try_create = |cfg: ContainerConfig| {
        let mut cri = creator.clone();
        let (pod, pc) = (pod.clone(), pc.clone());
        async move {
            cri.runtime
                .create_container(CreateContainerRequest {
                    pod_sandbox_id: pod,
                    config: Some(cfg),
                    sandbox_config: Some(pc),
                })
                .await
                .unwrap_err()
        }
    };
    let e = try_create(container_config("x", "", &["true"])).await;
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("config.image.image"), "{e}");
    let e = try_create(container_config(
        "x",
        "127.0.0.1:1/never/pulled:v1",
        &["true"],
    ))
    .await;
    assert_eq!(e.code(), tonic::Code::NotFound, "{e}");
    let mut cfg = container_config("x", &env.busybox, &["true"]);
    cfg.log_path = "../escape.log".into();
    let e = try_create(cfg).await;
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("config.log_path"), "{e}");
    let mut cfg = container_config("x", &env.busybox, &["true"]);
    cfg.metadata = None;
    let e = try_create(cfg).await;
    assert!(e.message().contains("config.metadata"), "{e}");
    let e = cri
        .runtime
        .exec_sync(ExecSyncRequest {
            container_id: "nope".into(),
            cmd: vec![],
            timeout: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("cmd"), "{e}");
    let e = cri
        .runtime
        .start_container(StartContainerRequest {
            container_id: "0123456789".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);

    // Failures after the rootfs is mounted roll every step back: one found while
    // building the spec, one only the runtime finds (a CPU this node lacks).
    let mut cfg = container_config("late", &env.busybox, &["true"]);
    cfg.mounts = vec![Mount {
        container_path: "/data".into(),
        host_path: "/nonexistent/berth-lifecycle-test".into(),
        ..Default::default()
    }];
    let e = try_create(cfg).await;
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    assert!(e.message().contains("mounts[0].host_path"), "{e}");
    let mut cfg = container_config("late", &env.busybox, &["true"]);
    cfg.linux.as_mut().unwrap().resources = Some(LinuxContainerResources {
        cpuset_cpus: "1000".into(),
        ..Default::default()
    });
    let e = try_create(cfg).await;
    assert_eq!(e.code(), tonic::Code::Internal, "{e}");
    assert!(e.message().contains("cpuset.cpus"), "{e}");
    let runtime_dirs: Vec<_> = std::fs::read_dir(env.base.berthd.state_dir().join("c"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(runtime_dirs.is_empty(), "{runtime_dirs:?}");
    // The failed calls freed the name.
    let ok = create_container(
        &mut cri,
        &pod,
        &pc,
        container_config("late", &env.busybox, &["true"]),
    )
    .await;
    remove_container(&mut cri, &ok).await;

    // None of the failed creates left a container or a rootfs behind.
    let all = list_containers(&mut cri, None).await;
    assert!(all.is_empty(), "{all:?}");
    let left: Vec<_> = std::fs::read_dir(env.base.berthd.root_dir().join("containers"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    teardown_leaving_nothing(&mut cri, &env.base.berthd, &[&pod]).await;
}

#[tokio::test]
async fn host_network_pods_share_the_node_network_and_get_their_own_ipc() {
    skip_if!(skip::no_pod_env());
    let env = env().await;
    let mut cri = env.cri.clone();
    let mut pc = pod_config(&env, "hostnet");
    pc.hostname = String::new();
    pc.linux.as_mut().unwrap().security_context = Some(LinuxSandboxSecurityContext {
        namespace_options: Some(calls::namespaces(
            NamespaceMode::Node,
            NamespaceMode::Container,
        )),
        ..Default::default()
    });
    let pod = run_pod(&mut cri, &pc).await;
    let pins = env.base.berthd.state_dir().join("ns").join(&pod);
    assert!(pins.join("ipc").exists() && !pins.join("net").exists() && !pins.join("uts").exists());
    let mut cfg = container_config("app", &env.busybox, &["sleep", "3600"]);
    cfg.linux.as_mut().unwrap().security_context = Some(LinuxContainerSecurityContext {
        namespace_options: Some(calls::namespaces(
            NamespaceMode::Node,
            NamespaceMode::Container,
        )),
        ..Default::default()
    });
    let c = run_container(&mut cri, &pod, &pc, cfg).await;
    let r = exec_sync(&mut cri, &c, &["ls", "-l", "/proc/self/ns/net"], 10)
        .await
        .unwrap();
    let inside = String::from_utf8_lossy(&r.stdout)
        .trim()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    let host = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_eq!(inside, host.display().to_string());
    let r = exec_sync(&mut cri, &c, &["hostname"], 10).await.unwrap();
    let node = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), node.trim());
    teardown_leaving_nothing(&mut cri, &env.base.berthd, &[&pod, &c]).await;
}

#[tokio::test]
async fn resources_update_the_cgroup_and_a_rotated_log_is_reopened() {
    skip_if!(skip::no_pod_env());
    let env = env().await;
    let mut cri = env.cri.clone();
    let mut events = cri
        .runtime
        .get_container_events(GetEventsRequest {})
        .await
        .unwrap()
        .into_inner();
    let pc = pod_config(&env, "tick");
    let pod = run_pod(&mut cri, &pc).await;
    let c = create_container(
        &mut cri,
        &pod,
        &pc,
        container_config(
            "ticker",
            &env.busybox,
            &[
                "sh",
                "-c",
                "i=0; while [ $i -lt 100 ]; do echo tick$i; i=$((i+1)); sleep 0.1; done",
            ],
        ),
    )
    .await;
    start_container(&mut cri, &c).await;

    let limit = 96i64 << 20;
    cri.runtime
        .update_container_resources(UpdateContainerResourcesRequest {
            container_id: c.clone(),
            linux: Some(LinuxContainerResources {
                memory_limit_in_bytes: limit,
                ..Default::default()
            }),
            windows: None,
            annotations: HashMap::new(),
        })
        .await
        .unwrap();
    let file = PathBuf::from("/sys/fs/cgroup/memory/berth")
        .join(&c)
        .join("memory.limit_in_bytes");
    // This node has cgroup v1 controllers (see DESIGN.md).
    assert!(file.exists(), "{}", file.display());
    assert_eq!(
        std::fs::read_to_string(&file).unwrap().trim(),
        limit.to_string()
    );
    let s = container_status(&mut cri, &c).await;
    assert_eq!(
        s.resources.unwrap().linux.unwrap().memory_limit_in_bytes,
        limit,
        "status reports the new limit"
    );

    // kubelet's rotation: rename, then ask for a reopen; new lines go to a new file.
    let log = PathBuf::from(&pc.log_directory).join("ticker/0.log");
    wait::until_now("ticks in the log", Duration::from_secs(10), || {
        wait::check(!log_lines(&log, "stdout").is_empty(), "none")
    })
    .await;
    let rotated = log.with_extension("log.1");
    std::fs::rename(&log, &rotated).unwrap();
    cri.runtime
        .reopen_container_log(ReopenContainerLogRequest {
            container_id: c.clone(),
        })
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while log_lines(&log, "stdout").is_empty() {
        assert!(
            Instant::now() < deadline,
            "nothing written to the reopened log"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let old = log_lines(&rotated, "stdout");
    let new = log_lines(&log, "stdout");
    assert!(!old.is_empty());
    assert!(
        old.iter().all(|l| !new.contains(l)),
        "lines are not duplicated"
    );

    // The watcher reports the natural exit as an event, without anyone asking.
    let mut kinds = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !kinds.contains(&(ContainerEventType::ContainerStoppedEvent as i32)) {
        assert!(Instant::now() < deadline, "no STOPPED event: {kinds:?}");
        if let Ok(Ok(Some(ev))) =
            tokio::time::timeout(Duration::from_secs(1), events.message()).await
        {
            assert_eq!(ev.container_id, c);
            kinds.push(ev.container_event_type);
        }
    }
    assert_eq!(
        kinds,
        [
            ContainerEventType::ContainerCreatedEvent as i32,
            ContainerEventType::ContainerStartedEvent as i32,
            ContainerEventType::ContainerStoppedEvent as i32
        ]
    );
    let s = container_status(&mut cri, &c).await;
    assert_eq!((s.exit_code, s.reason.as_str()), (0, "Completed"));
    teardown_leaving_nothing(&mut cri, &env.base.berthd, &[&pod, &c]).await;
}

/// pid POD (also what a config without namespace_options means, as crictl's
/// minimal pod config sends): the pod's containers see each other's processes
/// and berth's pause init is PID 1; removal stops that init.
#[tokio::test]
async fn containers_of_a_pod_with_a_shared_pid_namespace_see_each_other() {
    skip_if!(skip::no_pod_env());
    let env = env().await;
    let mut cri = env.cri.clone();
    let mut pc = pod_config(&env, "sharedpid");
    // No namespace options at all: every namespace is POD.
    pc.linux.as_mut().unwrap().security_context = None;
    let pod = run_pod(&mut cri, &pc).await;
    let pins = env.base.berthd.state_dir().join("ns").join(&pod);
    assert!(
        pins.join("pid").exists(),
        "no pid pin in {}",
        pins.display()
    );
    let mut ids = Vec::new();
    for (name, secs) in [("a", "3601"), ("b", "3602")] {
        let mut cfg = container_config(name, &env.busybox, &["sleep", secs]);
        cfg.linux.as_mut().unwrap().security_context = None;
        let c = run_container(&mut cri, &pod, &pc, cfg).await;
        ids.push(c);
    }
    let r = exec_sync(&mut cri, &ids[0], &["ps", "-o", "pid,args"], 10)
        .await
        .unwrap();
    let ps = String::from_utf8_lossy(&r.stdout).to_string();
    assert!(
        ps.contains("sleep 3601") && ps.contains("sleep 3602"),
        "ps in a:\n{ps}"
    );
    let pid1 = ps
        .lines()
        .find(|l| l.split_whitespace().next() == Some("1"))
        .unwrap_or_else(|| panic!("no PID 1 in:\n{ps}"));
    assert!(
        !pid1.contains("sleep"),
        "PID 1 should be the pod's init, not a container: {pid1}"
    );
    teardown_pod(&mut cri, &pod).await;
    let mut all: Vec<&str> = ids.iter().map(|s| s.as_str()).collect();
    all.push(&pod);
    assert_eq!(env.base.berthd.leftovers(&all), Vec::<String>::new());
    // The pause init names the pod's pin dir on its command line: it must be gone.
    let pin = pins.display().to_string();
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        assert!(
            !(cmd.contains("__pause") && cmd.contains(&pin)),
            "pause init left: {cmd}"
        );
    }
}

/// 50 pods, each with a running container, started all at once as a busy
/// kubelet would: no errors, every container runs, and removing them all
/// leaves no mount, cgroup, pin, directory or monitor behind.
#[tokio::test]
async fn fifty_pods_started_concurrently_run_and_leave_nothing_after_removal() {
    skip_if!(skip::no_pod_env());
    let env = env().await;
    let count: usize = std::env::var("BERTH_CONCURRENT_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let mut tasks = Vec::new();
    for i in 0..count {
        let mut cri = env.cri.clone();
        let pc = pod_config(&env, &format!("many{i}"));
        let cfg = container_config("app", &env.busybox, &["sleep", "3600"]);
        tasks.push(tokio::spawn(async move {
            let pod = run_pod(&mut cri, &pc).await;
            let c = run_container(&mut cri, &pod, &pc, cfg).await;
            (pod, c)
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.expect("a concurrent pod start failed"));
    }
    let mut cri = env.cri.clone();
    let running = list_containers(
        &mut cri,
        Some(ContainerFilter {
            state: Some(ContainerStateValue {
                state: ContainerState::ContainerRunning as i32,
            }),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(running.len(), count, "running containers");
    let mut removals = Vec::new();
    for (pod, _) in &ids {
        let mut cri = env.cri.clone();
        let pod = pod.clone();
        removals.push(tokio::spawn(
            async move { teardown_pod(&mut cri, &pod).await },
        ));
    }
    for r in removals {
        r.await.expect("a concurrent pod removal failed");
    }
    let all: Vec<&str> = ids
        .iter()
        .flat_map(|(p, c)| [p.as_str(), c.as_str()])
        .collect();
    assert_eq!(env.base.berthd.leftovers(&all), Vec::<String>::new());
    let pods = list_pods(&mut cri).await;
    assert!(pods.is_empty(), "{} pods left", pods.len());
}

#[tokio::test]
async fn runtime_default_seccomp_confines_containers_and_execs_from_one_compiled_program() {
    skip_if!(skip::no_pod_env());
    let env = env().await;
    let mut cri = env.cri.clone();
    let pc = pod_config(&env, "seccomp");
    let pod = run_pod(&mut cri, &pc).await;
    let config = |name: &str, profile: security_profile::ProfileType| {
        let mut cfg = container_config(name, &env.busybox, &["sleep", "3600"]);
        cfg.linux
            .as_mut()
            .unwrap()
            .security_context
            .get_or_insert_with(Default::default)
            .seccomp = Some(SecurityProfile {
            profile_type: profile as i32,
            ..Default::default()
        });
        cfg
    };
    let cache = env.base.berthd.state_dir().join("seccomp");
    let programs = || {
        std::fs::read_dir(&cache)
            .map(|d| {
                d.flatten()
                    .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                    .count()
            })
            .unwrap_or(0)
    };
    let free = run_container(
        &mut cri,
        &pod,
        &pc,
        config("free", security_profile::ProfileType::Unconfined),
    )
    .await;
    assert_eq!(programs(), 0, "an unconfined container compiles nothing");
    let a = run_container(
        &mut cri,
        &pod,
        &pc,
        config("a", security_profile::ProfileType::RuntimeDefault),
    )
    .await;
    assert_eq!(programs(), 1, "the compiled RuntimeDefault program is kept");
    let b = run_container(
        &mut cri,
        &pod,
        &pc,
        config("b", security_profile::ProfileType::RuntimeDefault),
    )
    .await;
    assert_eq!(programs(), 1, "the same profile reuses the kept program");

    // Seccomp mode 2 (filter) for the init and for an exec'd process; a new
    // user namespace is refused by RuntimeDefault but not without a profile.
    let probe = "grep Seccomp: /proc/1/status /proc/self/status | tr -d '\\t'; unshare -U true && echo unshare-ok || echo unshare-denied";
    for (c, mode, unshare) in [
        (&free, "0", "unshare-ok"),
        (&a, "2", "unshare-denied"),
        (&b, "2", "unshare-denied"),
    ] {
        let r = exec_sync(&mut cri, c, &["sh", "-c", probe], 10)
            .await
            .unwrap();
        let out = String::from_utf8_lossy(&r.stdout);
        assert_eq!(
            out.matches(&format!("Seccomp:{mode}\n")).count(),
            2,
            "{out}"
        );
        assert!(out.contains(unshare), "{out}");
    }
    teardown_leaving_nothing(&mut cri, &env.base.berthd, &[&pod, &free, &a, &b]).await;
}

/// berthd keeps its unfiltered ListPodSandbox/ListContainers replies until a
/// record changes: every change, including an exit berthd learns of on its
/// own, must show in the next unfiltered list, and an empty filter is the
/// same as none.
#[tokio::test]
async fn unfiltered_lists_follow_every_change_of_pods_and_containers() {
    skip_if!(skip::no_pod_env());
    let env = env().await;
    let mut cri = env.cri.clone();
    let pc = pod_config(&env, "relist");
    let pod = run_pod(&mut cri, &pc).await;
    let pod_state = |pods: Vec<PodSandbox>| {
        pods.into_iter()
            .find(|p| p.id == pod)
            .map(|p| PodSandboxState::try_from(p.state).unwrap())
    };
    let states = |list: Vec<Container>| -> Vec<(String, ContainerState)> {
        list.into_iter()
            .filter(|c| c.pod_sandbox_id == pod)
            .map(|c| (c.id, ContainerState::try_from(c.state).unwrap()))
            .collect()
    };
    assert_eq!(
        pod_state(list_pods(&mut cri).await),
        Some(PodSandboxState::SandboxReady)
    );
    assert_eq!(states(list_containers(&mut cri, None).await), []);

    let mut cfg = container_config("sleeper", &env.busybox, &["sleep", "3600"]);
    cfg.labels.insert("tier".into(), "relist".into());
    let sleeper = create_container(&mut cri, &pod, &pc, cfg).await;
    let listed = list_containers(&mut cri, None).await;
    assert_eq!(
        states(listed.clone()),
        [(sleeper.clone(), ContainerState::ContainerCreated)]
    );
    let mine = listed.iter().find(|c| c.id == sleeper).unwrap();
    assert_eq!(mine.labels["tier"], "relist");
    assert_eq!(mine.metadata.as_ref().unwrap().name, "sleeper");
    // An empty filter is the unfiltered list, not a filter matching nothing.
    assert_eq!(
        list_containers(&mut cri, Some(ContainerFilter::default())).await,
        listed
    );

    start_container(&mut cri, &sleeper).await;
    assert_eq!(
        states(list_containers(&mut cri, None).await),
        [(sleeper.clone(), ContainerState::ContainerRunning)]
    );

    // A container that exits by itself: berthd's exit watcher records it, and
    // the next list shows it without anyone asking for its status.
    let quick = run_container(
        &mut cri,
        &pod,
        &pc,
        container_config("quick", &env.busybox, &["true"]),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let want_exit = |list: &[(String, ContainerState)]| {
        list.iter()
            .any(|(id, s)| *id == quick && *s == ContainerState::ContainerExited)
    };
    let mut listed = states(list_containers(&mut cri, None).await);
    while !want_exit(&listed) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        listed = states(list_containers(&mut cri, None).await);
    }
    assert!(want_exit(&listed), "{listed:?}");

    stop_container(&mut cri, &sleeper, 0).await;
    remove_container(&mut cri, &quick).await;
    assert_eq!(
        states(list_containers(&mut cri, None).await),
        [(sleeper.clone(), ContainerState::ContainerExited)]
    );
    remove_container(&mut cri, &sleeper).await;
    assert_eq!(states(list_containers(&mut cri, None).await), []);

    stop_pod(&mut cri, &pod).await;
    assert_eq!(
        pod_state(list_pods(&mut cri).await),
        Some(PodSandboxState::SandboxNotready)
    );
    assert_eq!(
        pod_state(
            cri.runtime
                .list_pod_sandbox(ListPodSandboxRequest {
                    filter: Some(PodSandboxFilter::default()),
                })
                .await
                .unwrap()
                .into_inner()
                .items
        ),
        Some(PodSandboxState::SandboxNotready)
    );
    remove_pod(&mut cri, &pod).await;
    assert_eq!(pod_state(list_pods(&mut cri).await), None);
    assert_eq!(
        env.base.berthd.leftovers(&[&pod, &sleeper, &quick]),
        Vec::<String>::new()
    );
}

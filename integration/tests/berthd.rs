//! The berthd harness against the real daemon: start, Version, Status, restart,
//! crash, cleanup.

use berth_integration::berthd::{Berthd, BerthdOptions};
use berth_integration::cni::TestPlugins;
use berth_integration::{skip, skip_if, wait};
use berth_proto::v1::{StatusRequest, VersionRequest};

async fn version(berthd: &Berthd) -> berth_proto::v1::VersionResponse {
    let mut cri = berthd.client().await.unwrap();
    cri.runtime
        .version(VersionRequest {
            version: "v1".into(),
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn version_and_status_answer_over_the_socket() {
    skip_if!(skip::not_root());
    let berthd = Berthd::start().await.unwrap();
    assert!(berthd.socket_path().starts_with(berthd.dir()));
    let v = version(&berthd).await;
    assert_eq!(v.runtime_name, "berth");
    assert_eq!(v.runtime_api_version, "v1");
    assert!(!v.runtime_version.is_empty());

    let mut cri = berthd.client().await.unwrap();
    let status = cri
        .runtime
        .status(StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    let conditions = status.status.unwrap().conditions;
    let runtime_ready = conditions
        .iter()
        .find(|c| c.r#type == "RuntimeReady")
        .unwrap_or_else(|| panic!("no RuntimeReady in {conditions:?}"));
    assert!(runtime_ready.status, "{runtime_ready:?}");
    // The harness gives berthd a private, empty CNI config dir, so the network
    // cannot be ready whatever the host has in /etc/cni/net.d.
    assert!(berthd.cni_conf_dir().starts_with(berthd.dir()));
    let network_ready = conditions
        .iter()
        .find(|c| c.r#type == "NetworkReady")
        .unwrap_or_else(|| panic!("no NetworkReady in {conditions:?}"));
    assert!(!network_ready.status, "{network_ready:?}");
}

#[tokio::test]
async fn restart_and_kill9_bring_up_a_new_daemon_on_the_same_dirs() {
    skip_if!(skip::not_root());
    let mut berthd = Berthd::start().await.unwrap();
    let first = berthd.pid().unwrap();
    berthd.restart().await.unwrap();
    let second = berthd.pid().unwrap();
    assert_ne!(first, second);
    assert_eq!(version(&berthd).await.runtime_name, "berth");

    berthd.kill9().unwrap();
    assert!(!berthd.is_running());
    assert!(
        berthd.client().await.is_err() || {
            // A connect may succeed lazily; an RPC must not.
            let mut cri = berthd.client().await.unwrap();
            cri.runtime
                .version(VersionRequest {
                    version: "v1".into(),
                })
                .await
                .is_err()
        }
    );
    berthd.restart().await.unwrap();
    assert_ne!(berthd.pid().unwrap(), second);
    assert_eq!(version(&berthd).await.runtime_api_version, "v1");
}

#[tokio::test]
async fn graceful_stop_exits_cleanly() {
    skip_if!(skip::not_root());
    let mut berthd = Berthd::start().await.unwrap();
    let _cri = berthd.client().await.unwrap();
    let status = berthd.stop().await.unwrap().unwrap();
    assert!(
        status.success(),
        "berthd exited with {status} on SIGTERM:\n{}",
        berthd.log()
    );
    assert_eq!(berthd.stop().await.unwrap(), None);
}

/// A kubelet that hangs (or a crictl that was suspended) must not keep berthd from
/// shutting down: SIGTERM has to end the daemon within the harness's stop timeout
/// even while a connection that never answers GOAWAY stays open.
#[tokio::test]
async fn sigterm_exits_while_an_unresponsive_client_stays_connected() {
    use std::io::Write;
    skip_if!(skip::not_root());
    let mut berthd = Berthd::start().await.unwrap();
    let mut idle = std::os::unix::net::UnixStream::connect(berthd.socket_path()).unwrap();
    // HTTP/2 preface and an empty SETTINGS frame, then silence.
    idle.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .unwrap();
    let started = std::time::Instant::now();
    let status = berthd.stop().await.unwrap().unwrap();
    assert!(
        status.success(),
        "berthd needed SIGKILL after {:?} ({status}) with an idle client connected:\n{}",
        started.elapsed(),
        berthd.log()
    );
}

#[tokio::test]
async fn drop_kills_berthd_and_removes_its_dir() {
    skip_if!(skip::not_root());
    let berthd = Berthd::start().await.unwrap();
    let pid = berthd.pid().unwrap();
    let dir = berthd.dir().to_path_buf();
    drop(berthd);
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "berthd pid {pid} still exists"
    );
}

#[tokio::test]
async fn bad_config_fails_start_with_the_daemons_message() {
    skip_if!(skip::not_root());
    let err = Berthd::start_with(BerthdOptions::default().config("log_format = \"yaml\"\n"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("exited early"), "{err}");
    assert!(err.contains("log_format"), "{err}");
}

#[tokio::test]
async fn test_env_points_berthd_at_the_seeded_registry() {
    use berth_integration::env::TestEnv;
    skip_if!(skip::first(&[
        skip::not_root(),
        skip::no_registry(),
        skip::no_busybox()
    ]));
    let mut env = TestEnv::start().await.unwrap();
    let config = std::fs::read_to_string(env.berthd.config_path()).unwrap();
    let hosts_dir = env.registry.dir().join("certs.d");
    assert!(
        config.contains(&hosts_dir.display().to_string()),
        "{config}"
    );
    assert!(hosts_dir
        .join(env.registry.host())
        .join("hosts.toml")
        .is_file());
    let busybox = berth_integration::test_images::busybox().unwrap();
    let m = env
        .registry
        .client()
        .unwrap()
        .fetch_manifest("busybox", "latest")
        .await
        .unwrap();
    assert_eq!(m.digest, busybox.digest());
    assert!(env.image("busybox").ends_with("/busybox:latest"));
    let v = env
        .cri
        .runtime
        .version(VersionRequest {
            version: "v1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.runtime_name, "berth");
}

#[tokio::test]
async fn a_second_berthd_on_a_live_socket_exits_and_the_first_keeps_serving() {
    skip_if!(skip::not_root());
    let berthd = Berthd::start().await.unwrap();
    let other = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(berthd.binary())
        .arg("--listen")
        .arg(berthd.endpoint())
        .arg("--root")
        .arg(other.path().join("root"))
        .arg("--state-dir")
        .arg(other.path().join("run"))
        .arg("--config")
        .arg(berthd.config_path())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "second berthd should refuse to start"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("another berthd is already serving"),
        "{stderr}"
    );
    // Its state dir was never touched, and the first daemon still answers,
    // also through the operator CLI.
    assert!(!other.path().join("root").join("meta.redb").exists());
    assert_eq!(version(&berthd).await.runtime_name, "berth");
    let cli = std::process::Command::new(berthd.binary().with_file_name("berth"))
        .args(["-r", &berthd.endpoint(), "version"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&cli.stdout);
    assert!(cli.status.success(), "{text}");
    assert!(
        text.contains("RuntimeName:  berth") && text.contains("RuntimeApiVersion:  v1"),
        "{text}"
    );
}

/// berthd binds its socket before start-up recovery and answers UNAVAILABLE
/// until recovery is done (kubelet retries that; "connection refused" reads as
/// a dead runtime). Recovery is held open by a CNI DEL that waits for a file:
/// the pod a kill -9 left half-created in the middle of its CNI ADD gets its
/// address released by that DEL before berthd serves.
#[tokio::test]
async fn a_client_during_recovery_gets_unavailable_then_ok() {
    use berth_proto::v1::{PodSandboxConfig, PodSandboxMetadata, RunPodSandboxRequest};
    skip_if!(skip::not_root());
    let cni = TestPlugins::new().unwrap();
    let calls = cni.dir().join("calls.log");
    let release = |cmd: &str| cni.dir().join(format!("release-{cmd}"));
    // ADD and DEL log themselves, then wait until the test lets them finish
    // (Debian's loopback plugin brings up `lo`).
    cni.add(
        "gatenet",
        &format!(
            "#!/bin/sh\ncat >/dev/null\necho \"$CNI_COMMAND\" >> {calls}\ncase \"$CNI_COMMAND\" in\nADD|DEL) while [ ! -e {dir}/release-$CNI_COMMAND ]; do sleep 0.05; done ;;\nVERSION) echo '{{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[\"0.4.0\",\"1.0.0\"]}}' ;;\nesac\n[ \"$CNI_COMMAND\" = ADD ] && echo '{{\"cniVersion\":\"1.0.0\"}}'\nexit 0\n",
            calls = calls.display(),
            dir = cni.dir().display()
        ),
    )
    .unwrap();
    cni.use_only("gate", "gatenet").unwrap();
    let options = cni.berthd_options(BerthdOptions::default());
    let mut berthd = Berthd::start_with(options.cni_setting("plugin_timeout_secs = 600"))
        .await
        .unwrap();
    let logged = |cmd: &str| {
        std::fs::read_to_string(&calls)
            .unwrap_or_default()
            .lines()
            .any(|l| l == cmd)
    };

    let mut cri = berthd.client().await.unwrap();
    let logs = tempfile::tempdir().unwrap();
    let run = tokio::spawn(async move {
        cri.runtime
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(PodSandboxConfig {
                    metadata: Some(PodSandboxMetadata {
                        name: "half".into(),
                        uid: "uid-half".into(),
                        namespace: "recovery".into(),
                        attempt: 0,
                    }),
                    log_directory: logs.path().display().to_string(),
                    ..Default::default()
                }),
                runtime_handler: String::new(),
            })
            .await
    });
    wait_for("CNI ADD", || logged("ADD") || run.is_finished()).await;
    assert!(!run.is_finished(), "RunPodSandbox ended: {:?}", run.await);
    berthd.kill9().unwrap();
    run.await.unwrap().unwrap_err();
    // The orphaned ADD may finish now; nobody is left to hear it.
    std::fs::write(release("ADD"), "").unwrap();

    berthd.restart_without_waiting().await.unwrap();
    wait_for("recovery's CNI DEL", || logged("DEL")).await;
    // Recovery is running and cannot end before release-DEL exists.
    let mut cri = berthd.client().await.unwrap();
    let status = cri
        .runtime
        .version(VersionRequest {
            version: "v1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("recover"), "{status:?}");

    std::fs::write(release("DEL"), "").unwrap();
    berthd.wait_ready().await.unwrap();
    assert_eq!(version(&berthd).await.runtime_name, "berth");
    let pods = berth_integration::calls::list_pods(&mut berthd.client().await.unwrap()).await;
    assert!(
        pods.is_empty(),
        "the half-created pod was not rolled back: {pods:?}"
    );
}

/// Polls `done` until it holds; fails after a minute naming `what`.
async fn wait_for(what: &str, done: impl Fn() -> bool) {
    let minute = std::time::Duration::from_secs(60);
    wait::until_now(what, minute, || wait::check(done(), "not yet")).await
}

//! The CRI calls end-to-end tests make over and over, one function each.
//!
//! Unlike [`crate::env::TestEnv`]'s methods these unwrap: they stand for the
//! inline `cri.runtime.x(..).await.unwrap()` a test would otherwise write, so a
//! failed call panics with the gRPC status exactly as that `unwrap` did. Calls
//! whose error a test inspects (ExecSync) return the `Result` instead.

use std::time::{Duration, Instant};

use berth_proto::v1::*;

use crate::client::Cri;

/// RunPodSandbox with `config`; returns the pod id.
pub async fn run_pod(cri: &mut Cri, config: &PodSandboxConfig) -> String {
    cri.runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id
}

/// PodSandboxStatus's status (not verbose).
pub async fn pod_status(cri: &mut Cri, pod: &str) -> PodSandboxStatus {
    cri.runtime
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: pod.into(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
}

/// The pod's primary IP as PodSandboxStatus reports it ("" when it has none).
pub async fn pod_ip(cri: &mut Cri, pod: &str) -> String {
    pod_status(cri, pod).await.network.unwrap_or_default().ip
}

/// StopPodSandbox.
pub async fn stop_pod(cri: &mut Cri, pod: &str) {
    cri.runtime
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.into(),
        })
        .await
        .unwrap();
}

/// RemovePodSandbox.
pub async fn remove_pod(cri: &mut Cri, pod: &str) {
    cri.runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod.into(),
        })
        .await
        .unwrap();
}

/// StopPodSandbox then RemovePodSandbox, as kubelet tears a pod down.
pub async fn teardown_pod(cri: &mut Cri, pod: &str) {
    stop_pod(cri, pod).await;
    remove_pod(cri, pod).await;
}

/// ListPodSandbox without a filter.
pub async fn list_pods(cri: &mut Cri) -> Vec<PodSandbox> {
    cri.runtime
        .list_pod_sandbox(ListPodSandboxRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .items
}

/// CreateContainer of `config` in `pod`; returns the container id.
pub async fn create_container(
    cri: &mut Cri,
    pod: &str,
    pod_config: &PodSandboxConfig,
    config: ContainerConfig,
) -> String {
    cri.runtime
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.into(),
            config: Some(config),
            sandbox_config: Some(pod_config.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .container_id
}

/// StartContainer.
pub async fn start_container(cri: &mut Cri, id: &str) {
    cri.runtime
        .start_container(StartContainerRequest {
            container_id: id.into(),
        })
        .await
        .unwrap();
}

/// CreateContainer then StartContainer; returns the container id.
pub async fn run_container(
    cri: &mut Cri,
    pod: &str,
    pod_config: &PodSandboxConfig,
    config: ContainerConfig,
) -> String {
    let id = create_container(cri, pod, pod_config, config).await;
    start_container(cri, &id).await;
    id
}

/// StopContainer with a grace period of `timeout` seconds.
pub async fn stop_container(cri: &mut Cri, id: &str, timeout: i64) {
    cri.runtime
        .stop_container(StopContainerRequest {
            container_id: id.into(),
            timeout,
        })
        .await
        .unwrap();
}

/// RemoveContainer.
pub async fn remove_container(cri: &mut Cri, id: &str) {
    cri.runtime
        .remove_container(RemoveContainerRequest {
            container_id: id.into(),
        })
        .await
        .unwrap();
}

/// ContainerStatus's status (not verbose).
pub async fn container_status(cri: &mut Cri, id: &str) -> ContainerStatus {
    cri.runtime
        .container_status(ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
}

/// Polls ContainerStatus until the container has exited; panics naming its
/// state if it has not within `limit`.
pub async fn wait_exited(cri: &mut Cri, id: &str, limit: Duration) -> ContainerStatus {
    let deadline = Instant::now() + limit;
    loop {
        let s = container_status(cri, id).await;
        if s.state == ContainerState::ContainerExited as i32 {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "container {id} still {:?}",
            s.state
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// ListContainers with `filter`.
pub async fn list_containers(cri: &mut Cri, filter: Option<ContainerFilter>) -> Vec<Container> {
    cri.runtime
        .list_containers(ListContainersRequest { filter })
        .await
        .unwrap()
        .into_inner()
        .containers
}

/// ExecSync of `cmd` with `timeout` seconds; the error is the caller's to judge.
pub async fn exec_sync(
    cri: &mut Cri,
    id: &str,
    cmd: &[&str],
    timeout: i64,
) -> Result<ExecSyncResponse, tonic::Status> {
    cri.runtime
        .exec_sync(ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout,
        })
        .await
        .map(|r| r.into_inner())
}

/// Namespace options with `network` for the network namespace and `pid` for the
/// pid namespace; ipc is the pod's.
pub fn namespaces(network: NamespaceMode, pid: NamespaceMode) -> NamespaceOption {
    NamespaceOption {
        network: network as i32,
        pid: pid as i32,
        ipc: NamespaceMode::Pod as i32,
        target_id: String::new(),
        userns_options: None,
    }
}

/// The streaming URL of an Exec of `cmd` with stdout, and stderr unless `tty`
/// (a terminal merges it into stdout).
pub async fn exec_url(cri: &mut Cri, id: &str, cmd: &[&str], stdin: bool, tty: bool) -> String {
    cri.runtime
        .exec(ExecRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            tty,
            stdin,
            stdout: true,
            stderr: !tty,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .url
}

/// The streaming URL of an Attach with stdout, and stderr unless `tty`.
pub async fn attach_url(cri: &mut Cri, id: &str, stdin: bool, tty: bool) -> String {
    cri.runtime
        .attach(AttachRequest {
            container_id: id.into(),
            stdin,
            tty,
            stdout: true,
            stderr: !tty,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .url
}

/// The streaming URL of a PortForward to `port` of `pod`.
pub async fn port_forward_url(cri: &mut Cri, pod: &str, port: i32) -> String {
    cri.runtime
        .port_forward(PortForwardRequest {
            pod_sandbox_id: pod.into(),
            port: vec![port],
        })
        .await
        .unwrap()
        .into_inner()
        .url
}

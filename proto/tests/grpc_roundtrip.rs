//! The generated server and client talk real gRPC (HTTP/2) over a unix socket,
//! the transport kubelet and crictl use: a unary RPC, a server-streaming RPC,
//! a list reply sent from pre-encoded items and decoded by the ordinary client,
//! and an RPC the server rejects.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use berth_proto::encoded::{
    EncodedList, ListContainersReply, ListPodSandboxReply, StreamContainersReply,
    StreamPodSandboxesReply,
};
use berth_proto::v1;
use berth_proto::v1::runtime_service_client::RuntimeServiceClient;
use berth_proto::v1::runtime_service_server::{RuntimeService, RuntimeServiceServer};
use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::{Channel, Endpoint, Server, Uri};
use tonic::{Request, Response, Status};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;
type Reply<T> = Result<Response<T>, Status>;

/// A runtime that knows its version and lists three fixed containers; every
/// other RPC is rejected as unimplemented.
struct TestRuntime;

fn no<T>(rpc: &str) -> Reply<T> {
    Err(Status::unimplemented(format!("{rpc} is not implemented")))
}

#[tonic::async_trait]
impl RuntimeService for TestRuntime {
    async fn version(&self, request: Request<v1::VersionRequest>) -> Reply<v1::VersionResponse> {
        Ok(Response::new(v1::VersionResponse {
            version: request.into_inner().version,
            runtime_name: "berth".into(),
            runtime_version: "0.1.0".into(),
            runtime_api_version: "v1".into(),
        }))
    }

    type StreamContainersStream = BoxStream<StreamContainersReply>;
    async fn stream_containers(
        &self,
        request: Request<v1::StreamContainersRequest>,
    ) -> Reply<Self::StreamContainersStream> {
        let pod = request
            .into_inner()
            .filter
            .unwrap_or_default()
            .pod_sandbox_id;
        let container = |id: &str| v1::Container {
            id: id.into(),
            pod_sandbox_id: pod.clone(),
            ..Default::default()
        };
        // Two chunks, as a runtime batching its list would send.
        let chunks = vec![
            Ok(EncodedList::from_messages(&[
                container("c1"),
                container("c2"),
            ])),
            Ok(EncodedList::from_messages(&[container("c3")])),
        ];
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn run_pod_sandbox(
        &self,
        _: Request<v1::RunPodSandboxRequest>,
    ) -> Reply<v1::RunPodSandboxResponse> {
        no("RunPodSandbox")
    }
    async fn stop_pod_sandbox(
        &self,
        _: Request<v1::StopPodSandboxRequest>,
    ) -> Reply<v1::StopPodSandboxResponse> {
        no("StopPodSandbox")
    }
    async fn remove_pod_sandbox(
        &self,
        _: Request<v1::RemovePodSandboxRequest>,
    ) -> Reply<v1::RemovePodSandboxResponse> {
        no("RemovePodSandbox")
    }
    async fn pod_sandbox_status(
        &self,
        _: Request<v1::PodSandboxStatusRequest>,
    ) -> Reply<v1::PodSandboxStatusResponse> {
        no("PodSandboxStatus")
    }
    async fn list_pod_sandbox(
        &self,
        _: Request<v1::ListPodSandboxRequest>,
    ) -> Reply<ListPodSandboxReply> {
        no("ListPodSandbox")
    }
    type StreamPodSandboxesStream = BoxStream<StreamPodSandboxesReply>;
    async fn stream_pod_sandboxes(
        &self,
        _: Request<v1::StreamPodSandboxesRequest>,
    ) -> Reply<Self::StreamPodSandboxesStream> {
        no("StreamPodSandboxes")
    }
    async fn create_container(
        &self,
        _: Request<v1::CreateContainerRequest>,
    ) -> Reply<v1::CreateContainerResponse> {
        no("CreateContainer")
    }
    async fn start_container(
        &self,
        _: Request<v1::StartContainerRequest>,
    ) -> Reply<v1::StartContainerResponse> {
        no("StartContainer")
    }
    async fn stop_container(
        &self,
        _: Request<v1::StopContainerRequest>,
    ) -> Reply<v1::StopContainerResponse> {
        no("StopContainer")
    }
    async fn remove_container(
        &self,
        _: Request<v1::RemoveContainerRequest>,
    ) -> Reply<v1::RemoveContainerResponse> {
        no("RemoveContainer")
    }
    async fn list_containers(
        &self,
        _: Request<v1::ListContainersRequest>,
    ) -> Reply<ListContainersReply> {
        Ok(Response::new(
            EncodedList::from_messages(&many_containers()),
        ))
    }
    async fn container_status(
        &self,
        _: Request<v1::ContainerStatusRequest>,
    ) -> Reply<v1::ContainerStatusResponse> {
        no("ContainerStatus")
    }
    async fn update_container_resources(
        &self,
        _: Request<v1::UpdateContainerResourcesRequest>,
    ) -> Reply<v1::UpdateContainerResourcesResponse> {
        no("UpdateContainerResources")
    }
    async fn reopen_container_log(
        &self,
        _: Request<v1::ReopenContainerLogRequest>,
    ) -> Reply<v1::ReopenContainerLogResponse> {
        no("ReopenContainerLog")
    }
    async fn exec_sync(&self, _: Request<v1::ExecSyncRequest>) -> Reply<v1::ExecSyncResponse> {
        no("ExecSync")
    }
    async fn exec(&self, _: Request<v1::ExecRequest>) -> Reply<v1::ExecResponse> {
        no("Exec")
    }
    async fn attach(&self, _: Request<v1::AttachRequest>) -> Reply<v1::AttachResponse> {
        no("Attach")
    }
    async fn port_forward(
        &self,
        _: Request<v1::PortForwardRequest>,
    ) -> Reply<v1::PortForwardResponse> {
        no("PortForward")
    }
    async fn container_stats(
        &self,
        _: Request<v1::ContainerStatsRequest>,
    ) -> Reply<v1::ContainerStatsResponse> {
        no("ContainerStats")
    }
    async fn list_container_stats(
        &self,
        _: Request<v1::ListContainerStatsRequest>,
    ) -> Reply<v1::ListContainerStatsResponse> {
        no("ListContainerStats")
    }
    type StreamContainerStatsStream = BoxStream<v1::StreamContainerStatsResponse>;
    async fn stream_container_stats(
        &self,
        _: Request<v1::StreamContainerStatsRequest>,
    ) -> Reply<Self::StreamContainerStatsStream> {
        no("StreamContainerStats")
    }
    async fn pod_sandbox_stats(
        &self,
        _: Request<v1::PodSandboxStatsRequest>,
    ) -> Reply<v1::PodSandboxStatsResponse> {
        no("PodSandboxStats")
    }
    async fn list_pod_sandbox_stats(
        &self,
        _: Request<v1::ListPodSandboxStatsRequest>,
    ) -> Reply<v1::ListPodSandboxStatsResponse> {
        no("ListPodSandboxStats")
    }
    type StreamPodSandboxStatsStream = BoxStream<v1::StreamPodSandboxStatsResponse>;
    async fn stream_pod_sandbox_stats(
        &self,
        _: Request<v1::StreamPodSandboxStatsRequest>,
    ) -> Reply<Self::StreamPodSandboxStatsStream> {
        no("StreamPodSandboxStats")
    }
    async fn update_runtime_config(
        &self,
        _: Request<v1::UpdateRuntimeConfigRequest>,
    ) -> Reply<v1::UpdateRuntimeConfigResponse> {
        no("UpdateRuntimeConfig")
    }
    async fn status(&self, _: Request<v1::StatusRequest>) -> Reply<v1::StatusResponse> {
        no("Status")
    }
    async fn checkpoint_container(
        &self,
        _: Request<v1::CheckpointContainerRequest>,
    ) -> Reply<v1::CheckpointContainerResponse> {
        no("CheckpointContainer")
    }
    type GetContainerEventsStream = BoxStream<v1::ContainerEventResponse>;
    async fn get_container_events(
        &self,
        _: Request<v1::GetEventsRequest>,
    ) -> Reply<Self::GetContainerEventsStream> {
        no("GetContainerEvents")
    }
    async fn list_metric_descriptors(
        &self,
        _: Request<v1::ListMetricDescriptorsRequest>,
    ) -> Reply<v1::ListMetricDescriptorsResponse> {
        no("ListMetricDescriptors")
    }
    async fn list_pod_sandbox_metrics(
        &self,
        _: Request<v1::ListPodSandboxMetricsRequest>,
    ) -> Reply<v1::ListPodSandboxMetricsResponse> {
        no("ListPodSandboxMetrics")
    }
    type StreamPodSandboxMetricsStream = BoxStream<v1::StreamPodSandboxMetricsResponse>;
    async fn stream_pod_sandbox_metrics(
        &self,
        _: Request<v1::StreamPodSandboxMetricsRequest>,
    ) -> Reply<Self::StreamPodSandboxMetricsStream> {
        no("StreamPodSandboxMetrics")
    }
    async fn runtime_config(
        &self,
        _: Request<v1::RuntimeConfigRequest>,
    ) -> Reply<v1::RuntimeConfigResponse> {
        no("RuntimeConfig")
    }
    async fn update_pod_sandbox_resources(
        &self,
        _: Request<v1::UpdatePodSandboxResourcesRequest>,
    ) -> Reply<v1::UpdatePodSandboxResourcesResponse> {
        no("UpdatePodSandboxResources")
    }
}

/// Enough containers, with labels and annotations, for a reply of several
/// HTTP/2 frames and more than the default 64 KiB flow-control window.
fn many_containers() -> Vec<v1::Container> {
    (0..600)
        .map(|i| {
            let mut c = v1::Container {
                id: format!("{i:064x}"),
                pod_sandbox_id: format!("{:064x}", i / 10),
                metadata: Some(v1::ContainerMetadata {
                    name: format!("c{i}"),
                    attempt: i % 3,
                }),
                image: Some(v1::ImageSpec {
                    image: "registry.local/app:1".into(),
                    ..Default::default()
                }),
                image_ref: format!("registry.local/app@sha256:{i:064x}"),
                state: i32::try_from(i % 4).unwrap(),
                created_at: 1_700_000_000_000_000_000 + i64::from(i),
                image_id: format!("sha256:{i:064x}"),
                ..Default::default()
            };
            c.labels.insert("app".into(), format!("app-{}", i % 7));
            c.annotations.insert("n".into(), i.to_string());
            c
        })
        .collect()
}

/// Connects every channel request to one unix socket path; the URI is ignored.
#[derive(Clone)]
struct UnixConnector(PathBuf);

impl tower::Service<Uri> for UnixConnector {
    type Response = TokioIo<UnixStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let path = self.0.clone();
        Box::pin(async move { Ok(TokioIo::new(UnixStream::connect(path).await?)) })
    }
}

/// Serves TestRuntime on a socket in a fresh tempdir and returns a connected client.
async fn serve() -> (tempfile::TempDir, RuntimeServiceClient<Channel>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("berth.sock");
    let listener = UnixListener::bind(&socket).expect("bind unix socket");
    tokio::spawn(
        Server::builder()
            .add_service(RuntimeServiceServer::new(TestRuntime))
            .serve_with_incoming(UnixListenerStream::new(listener)),
    );
    // The authority is a placeholder: the connector decides where bytes go.
    let channel = Endpoint::from_static("http://berth.invalid")
        .connect_with_connector(UnixConnector(socket))
        .await
        .expect("connect over unix socket");
    (dir, RuntimeServiceClient::new(channel))
}

#[tokio::test]
async fn version_over_unix_socket() {
    let (_dir, mut client) = serve().await;
    let reply = client
        .version(v1::VersionRequest {
            version: "v1.36.0".into(),
        })
        .await
        .expect("Version rpc")
        .into_inner();
    assert_eq!(reply.version, "v1.36.0");
    assert_eq!(reply.runtime_name, "berth");
    assert_eq!(reply.runtime_version, "0.1.0");
    assert_eq!(reply.runtime_api_version, "v1");
}

#[tokio::test]
async fn stream_containers_delivers_every_chunk_then_ends() {
    let (_dir, mut client) = serve().await;
    let mut stream = client
        .stream_containers(v1::StreamContainersRequest {
            filter: Some(v1::ContainerFilter {
                pod_sandbox_id: "pod-1".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("StreamContainers rpc")
        .into_inner();
    let mut chunks = Vec::new();
    while let Some(chunk) = stream.next().await {
        chunks.push(chunk.expect("stream item"));
    }
    let sizes: Vec<usize> = chunks.iter().map(|c| c.containers.len()).collect();
    assert_eq!(sizes, [2, 1]);
    let ids: Vec<&str> = chunks
        .iter()
        .flat_map(|c| &c.containers)
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(ids, ["c1", "c2", "c3"]);
    assert!(chunks
        .iter()
        .flat_map(|c| &c.containers)
        .all(|c| c.pod_sandbox_id == "pod-1"));
}

#[tokio::test]
async fn a_pre_encoded_list_reply_decodes_to_the_same_containers_at_the_client() {
    let (_dir, mut client) = serve().await;
    let reply = client
        .list_containers(v1::ListContainersRequest { filter: None })
        .await
        .expect("ListContainers rpc")
        .into_inner();
    assert_eq!(reply.containers, many_containers());
}

#[tokio::test]
async fn rejected_rpc_reaches_the_client_as_unimplemented() {
    let (_dir, mut client) = serve().await;
    let err = client
        .exec_sync(v1::ExecSyncRequest {
            container_id: "c1".into(),
            cmd: vec!["true".into()],
            timeout: 1,
        })
        .await
        .expect_err("ExecSync must fail");
    assert_eq!(err.code(), tonic::Code::Unimplemented);
    assert_eq!(err.message(), "ExecSync is not implemented");
}

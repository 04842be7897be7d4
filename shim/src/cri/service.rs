//! The tonic boundary: one line per RPC. Each line opens the RPC's span (with
//! the pod and container ids it names), refuses calls with `UNAVAILABLE` until
//! start-up recovery has finished, calls the inherent `CriService` method that
//! holds the RPC's body (one file per RPC or tight group) and maps the shim's
//! error to a gRPC status through the single `From<Error> for Status`, and
//! counts the call and its latency by the status it ends with (`metrics::rpc`).
//! Every RPC's span is at info, so whatever an RPC logs at info or above names
//! it; the ids a body creates (RunPodSandbox, CreateContainer) are recorded on
//! the span once known. Polling RPCs (List*, *Status, stats, Version) log
//! their own per-call line at debug, the rest at info.

use std::sync::Arc;

use berth_proto::encoded::{
    ListContainersReply, ListPodSandboxReply, StreamContainersReply, StreamPodSandboxesReply,
};
use berth_proto::v1::{
    image_service_server::ImageService, runtime_service_server::RuntimeService, *,
};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::{BoxStream, CriService};

/// Ids a request names, recorded on its span.
pub(crate) trait SpanIds {
    /// The pod sandbox id, if the request has one.
    fn pod_sandbox_id(&self) -> &str {
        ""
    }
    /// The container id, if the request has one.
    fn container_id(&self) -> &str {
        ""
    }
}

macro_rules! span_ids {
    (pod: $($t:ty),*) => {$(impl SpanIds for $t { fn pod_sandbox_id(&self) -> &str { &self.pod_sandbox_id } })*};
    (ctr: $($t:ty),*) => {$(impl SpanIds for $t { fn container_id(&self) -> &str { &self.container_id } })*};
    (both: $($t:ty),*) => {$(impl SpanIds for $t {
        fn pod_sandbox_id(&self) -> &str { &self.pod_sandbox_id }
        fn container_id(&self) -> &str { &self.container_id }
    })*};
    (none: $($t:ty),*) => {$(impl SpanIds for $t {})*};
}

span_ids!(pod: StopPodSandboxRequest, RemovePodSandboxRequest, PodSandboxStatusRequest, CreateContainerRequest, PortForwardRequest, PodSandboxStatsRequest, UpdatePodSandboxResourcesRequest);
span_ids!(ctr: StartContainerRequest, StopContainerRequest, RemoveContainerRequest, ContainerStatusRequest, UpdateContainerResourcesRequest, ReopenContainerLogRequest, ExecSyncRequest, ExecRequest, AttachRequest, ContainerStatsRequest, CheckpointContainerRequest);
span_ids!(none: GetEventsRequest, VersionRequest, RunPodSandboxRequest, ListPodSandboxRequest, StreamPodSandboxesRequest, ListContainersRequest, StreamContainersRequest, ListContainerStatsRequest, StreamContainerStatsRequest, ListPodSandboxStatsRequest, StreamPodSandboxStatsRequest, UpdateRuntimeConfigRequest, StatusRequest, ListMetricDescriptorsRequest, ListPodSandboxMetricsRequest, StreamPodSandboxMetricsRequest, RuntimeConfigRequest, ListImagesRequest, StreamImagesRequest, ImageStatusRequest, PullImageRequest, RemoveImageRequest, ImageFsInfoRequest);

/// `None` (a field left empty, to be recorded later) for an id not given.
fn nonempty(id: &str) -> Option<&str> {
    (!id.is_empty()).then_some(id)
}

/// Runs one RPC body inside its span, behind the readiness gate.
macro_rules! rpc {
    ($self:ident, $level:ident, $name:literal, $req:ident, $method:ident) => {
        rpc!($self, $level, $name, $req, $method,)
    };
    // `$extra`: more arguments for the body, read from the request's metadata.
    ($self:ident, $level:ident, $name:literal, $req:ident, $method:ident, $($extra:expr),*) => {{
        let req = $req.into_inner();
        // INFO whatever `$level`: a polling RPC's warnings must carry its
        // context at the default level too; the span prints no line itself.
        // An id the request lacks stays empty until the body records it.
        let span = tracing::info_span!(
            "rpc",
            rpc = $name,
            pod_sandbox_id = nonempty(SpanIds::pod_sandbox_id(&req)),
            container_id = nonempty(SpanIds::container_id(&req)),
        );
        let svc = &$self.0;
        // The method's row in the metrics table, fixed at compile time.
        const METHOD: usize = crate::metrics::rpc::method_index($name);
        let t0 = std::time::Instant::now();
        let result: Result<_, Status> = async move {
            svc.ready()?;
            let started = std::time::Instant::now();
            let result = svc.$method(req, $($extra),*).await;
            match &result {
                Ok(_) => tracing::event!(tracing::Level::$level, elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX), "ok"),
                Err(e) => tracing::warn!(code = ?e.code(), error = %e, "failed"),
            }
            result.map(Response::new).map_err(Status::from)
        }
        .instrument(span)
        .await;
        let code = result.as_ref().map_or_else(Status::code, |_| tonic::Code::Ok);
        crate::metrics::rpc::RPCS.record(METHOD, code, t0.elapsed());
        result
    }};
}

/// `RuntimeService` on top of the shared [`CriService`].
#[derive(Debug, Clone)]
pub struct RuntimeApi(pub Arc<CriService>);

/// `ImageService` on top of the shared [`CriService`].
#[derive(Debug, Clone)]
pub struct ImageApi(pub Arc<CriService>);

#[tonic::async_trait]
impl RuntimeService for RuntimeApi {
    async fn version(
        &self,
        r: Request<VersionRequest>,
    ) -> Result<Response<VersionResponse>, Status> {
        rpc!(self, DEBUG, "Version", r, version)
    }
    async fn run_pod_sandbox(
        &self,
        r: Request<RunPodSandboxRequest>,
    ) -> Result<Response<RunPodSandboxResponse>, Status> {
        rpc!(self, INFO, "RunPodSandbox", r, run_pod_sandbox)
    }
    async fn stop_pod_sandbox(
        &self,
        r: Request<StopPodSandboxRequest>,
    ) -> Result<Response<StopPodSandboxResponse>, Status> {
        rpc!(self, INFO, "StopPodSandbox", r, stop_pod_sandbox)
    }
    async fn remove_pod_sandbox(
        &self,
        r: Request<RemovePodSandboxRequest>,
    ) -> Result<Response<RemovePodSandboxResponse>, Status> {
        rpc!(self, INFO, "RemovePodSandbox", r, remove_pod_sandbox)
    }
    async fn pod_sandbox_status(
        &self,
        r: Request<PodSandboxStatusRequest>,
    ) -> Result<Response<PodSandboxStatusResponse>, Status> {
        rpc!(self, DEBUG, "PodSandboxStatus", r, pod_sandbox_status)
    }
    async fn list_pod_sandbox(
        &self,
        r: Request<ListPodSandboxRequest>,
    ) -> Result<Response<ListPodSandboxReply>, Status> {
        rpc!(self, DEBUG, "ListPodSandbox", r, list_pod_sandbox)
    }
    type StreamPodSandboxesStream = BoxStream<StreamPodSandboxesReply>;
    async fn stream_pod_sandboxes(
        &self,
        r: Request<StreamPodSandboxesRequest>,
    ) -> Result<Response<Self::StreamPodSandboxesStream>, Status> {
        rpc!(self, DEBUG, "StreamPodSandboxes", r, stream_pod_sandboxes)
    }
    async fn create_container(
        &self,
        r: Request<CreateContainerRequest>,
    ) -> Result<Response<CreateContainerResponse>, Status> {
        rpc!(self, INFO, "CreateContainer", r, create_container)
    }
    async fn start_container(
        &self,
        r: Request<StartContainerRequest>,
    ) -> Result<Response<StartContainerResponse>, Status> {
        rpc!(self, INFO, "StartContainer", r, start_container)
    }
    async fn stop_container(
        &self,
        r: Request<StopContainerRequest>,
    ) -> Result<Response<StopContainerResponse>, Status> {
        rpc!(self, INFO, "StopContainer", r, stop_container)
    }
    async fn remove_container(
        &self,
        r: Request<RemoveContainerRequest>,
    ) -> Result<Response<RemoveContainerResponse>, Status> {
        rpc!(self, INFO, "RemoveContainer", r, remove_container)
    }
    async fn list_containers(
        &self,
        r: Request<ListContainersRequest>,
    ) -> Result<Response<ListContainersReply>, Status> {
        rpc!(self, DEBUG, "ListContainers", r, list_containers)
    }
    type StreamContainersStream = BoxStream<StreamContainersReply>;
    async fn stream_containers(
        &self,
        r: Request<StreamContainersRequest>,
    ) -> Result<Response<Self::StreamContainersStream>, Status> {
        rpc!(self, DEBUG, "StreamContainers", r, stream_containers)
    }
    async fn container_status(
        &self,
        r: Request<ContainerStatusRequest>,
    ) -> Result<Response<ContainerStatusResponse>, Status> {
        rpc!(self, DEBUG, "ContainerStatus", r, container_status)
    }
    async fn update_container_resources(
        &self,
        r: Request<UpdateContainerResourcesRequest>,
    ) -> Result<Response<UpdateContainerResourcesResponse>, Status> {
        rpc!(
            self,
            INFO,
            "UpdateContainerResources",
            r,
            update_container_resources
        )
    }
    async fn reopen_container_log(
        &self,
        r: Request<ReopenContainerLogRequest>,
    ) -> Result<Response<ReopenContainerLogResponse>, Status> {
        rpc!(self, INFO, "ReopenContainerLog", r, reopen_container_log)
    }
    async fn exec_sync(
        &self,
        r: Request<ExecSyncRequest>,
    ) -> Result<Response<ExecSyncResponse>, Status> {
        rpc!(self, INFO, "ExecSync", r, exec_sync)
    }
    async fn exec(&self, r: Request<ExecRequest>) -> Result<Response<ExecResponse>, Status> {
        rpc!(self, INFO, "Exec", r, exec)
    }
    async fn attach(&self, r: Request<AttachRequest>) -> Result<Response<AttachResponse>, Status> {
        rpc!(self, INFO, "Attach", r, attach)
    }
    async fn port_forward(
        &self,
        r: Request<PortForwardRequest>,
    ) -> Result<Response<PortForwardResponse>, Status> {
        rpc!(self, INFO, "PortForward", r, port_forward)
    }
    async fn container_stats(
        &self,
        r: Request<ContainerStatsRequest>,
    ) -> Result<Response<ContainerStatsResponse>, Status> {
        rpc!(self, DEBUG, "ContainerStats", r, container_stats)
    }
    async fn list_container_stats(
        &self,
        r: Request<ListContainerStatsRequest>,
    ) -> Result<Response<ListContainerStatsResponse>, Status> {
        rpc!(self, DEBUG, "ListContainerStats", r, list_container_stats)
    }
    type StreamContainerStatsStream = BoxStream<StreamContainerStatsResponse>;
    async fn stream_container_stats(
        &self,
        r: Request<StreamContainerStatsRequest>,
    ) -> Result<Response<Self::StreamContainerStatsStream>, Status> {
        rpc!(
            self,
            DEBUG,
            "StreamContainerStats",
            r,
            stream_container_stats
        )
    }
    async fn pod_sandbox_stats(
        &self,
        r: Request<PodSandboxStatsRequest>,
    ) -> Result<Response<PodSandboxStatsResponse>, Status> {
        rpc!(self, DEBUG, "PodSandboxStats", r, pod_sandbox_stats)
    }
    async fn list_pod_sandbox_stats(
        &self,
        r: Request<ListPodSandboxStatsRequest>,
    ) -> Result<Response<ListPodSandboxStatsResponse>, Status> {
        rpc!(
            self,
            DEBUG,
            "ListPodSandboxStats",
            r,
            list_pod_sandbox_stats
        )
    }
    type StreamPodSandboxStatsStream = BoxStream<StreamPodSandboxStatsResponse>;
    async fn stream_pod_sandbox_stats(
        &self,
        r: Request<StreamPodSandboxStatsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxStatsStream>, Status> {
        rpc!(
            self,
            DEBUG,
            "StreamPodSandboxStats",
            r,
            stream_pod_sandbox_stats
        )
    }
    async fn update_runtime_config(
        &self,
        r: Request<UpdateRuntimeConfigRequest>,
    ) -> Result<Response<UpdateRuntimeConfigResponse>, Status> {
        rpc!(self, INFO, "UpdateRuntimeConfig", r, update_runtime_config)
    }
    async fn status(&self, r: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        rpc!(self, DEBUG, "Status", r, status)
    }
    async fn checkpoint_container(
        &self,
        r: Request<CheckpointContainerRequest>,
    ) -> Result<Response<CheckpointContainerResponse>, Status> {
        rpc!(self, INFO, "CheckpointContainer", r, checkpoint_container)
    }
    type GetContainerEventsStream = BoxStream<ContainerEventResponse>;
    async fn get_container_events(
        &self,
        r: Request<GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        rpc!(self, INFO, "GetContainerEvents", r, get_container_events)
    }
    async fn list_metric_descriptors(
        &self,
        r: Request<ListMetricDescriptorsRequest>,
    ) -> Result<Response<ListMetricDescriptorsResponse>, Status> {
        rpc!(
            self,
            DEBUG,
            "ListMetricDescriptors",
            r,
            list_metric_descriptors
        )
    }
    async fn list_pod_sandbox_metrics(
        &self,
        r: Request<ListPodSandboxMetricsRequest>,
    ) -> Result<Response<ListPodSandboxMetricsResponse>, Status> {
        rpc!(
            self,
            DEBUG,
            "ListPodSandboxMetrics",
            r,
            list_pod_sandbox_metrics
        )
    }
    type StreamPodSandboxMetricsStream = BoxStream<StreamPodSandboxMetricsResponse>;
    async fn stream_pod_sandbox_metrics(
        &self,
        r: Request<StreamPodSandboxMetricsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxMetricsStream>, Status> {
        rpc!(
            self,
            DEBUG,
            "StreamPodSandboxMetrics",
            r,
            stream_pod_sandbox_metrics
        )
    }
    async fn runtime_config(
        &self,
        r: Request<RuntimeConfigRequest>,
    ) -> Result<Response<RuntimeConfigResponse>, Status> {
        rpc!(self, DEBUG, "RuntimeConfig", r, runtime_config)
    }
    async fn update_pod_sandbox_resources(
        &self,
        r: Request<UpdatePodSandboxResourcesRequest>,
    ) -> Result<Response<UpdatePodSandboxResourcesResponse>, Status> {
        rpc!(
            self,
            INFO,
            "UpdatePodSandboxResources",
            r,
            update_pod_sandbox_resources
        )
    }
}

#[tonic::async_trait]
impl ImageService for ImageApi {
    async fn list_images(
        &self,
        r: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        rpc!(self, DEBUG, "ListImages", r, list_images)
    }
    type StreamImagesStream = BoxStream<StreamImagesResponse>;
    async fn stream_images(
        &self,
        r: Request<StreamImagesRequest>,
    ) -> Result<Response<Self::StreamImagesStream>, Status> {
        rpc!(self, DEBUG, "StreamImages", r, stream_images)
    }
    async fn image_status(
        &self,
        r: Request<ImageStatusRequest>,
    ) -> Result<Response<ImageStatusResponse>, Status> {
        rpc!(self, DEBUG, "ImageStatus", r, image_status)
    }
    async fn pull_image(
        &self,
        r: Request<PullImageRequest>,
    ) -> Result<Response<PullImageResponse>, Status> {
        let deadline = super::image_pull::client_timeout(r.metadata());
        rpc!(self, INFO, "PullImage", r, pull_image, deadline)
    }
    async fn remove_image(
        &self,
        r: Request<RemoveImageRequest>,
    ) -> Result<Response<RemoveImageResponse>, Status> {
        rpc!(self, INFO, "RemoveImage", r, remove_image)
    }
    async fn image_fs_info(
        &self,
        r: Request<ImageFsInfoRequest>,
    ) -> Result<Response<ImageFsInfoResponse>, Status> {
        rpc!(self, DEBUG, "ImageFsInfo", r, image_fs_info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::test_log::Captured;

    async fn api(tmp: &std::path::Path) -> RuntimeApi {
        let config = crate::config::Config {
            root: tmp.join("root"),
            state_dir: tmp.join("state"),
            ..Default::default()
        };
        let svc = CriService::open(config).await.unwrap();
        // No recovery (nothing to recover, and it would start the exit watcher).
        svc.ready.store(true, std::sync::atomic::Ordering::Release);
        RuntimeApi(Arc::new(svc))
    }

    /// A pod on the node's network and IPC: no mounts, namespaces or CNI, so
    /// RunPodSandbox only writes files under the test's directory.
    fn node_pod() -> PodSandboxConfig {
        let mut pod = crate::cri::lifecycle::fake::web_pod();
        let ns = pod
            .linux
            .as_mut()
            .and_then(|l| l.security_context.as_mut())
            .and_then(|s| s.namespace_options.as_mut())
            .expect("web_pod has namespace options");
        ns.network = NamespaceMode::Node as i32;
        ns.ipc = NamespaceMode::Node as i32;
        pod
    }

    // Regression: the body of RunPodSandbox runs in a detached task that logged
    // without the RPC's span, the id it made was never on the span, and the
    // polling RPCs' span was at debug, so their warnings had no context at the
    // default level.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_rpc_line_at_the_default_level_names_the_rpc_and_the_new_id() {
        let tmp = tempfile::tempdir().unwrap();
        let api = api(tmp.path()).await;
        let (log, _guard) = Captured::install();

        let id = api
            .run_pod_sandbox(Request::new(RunPodSandboxRequest {
                config: Some(node_pod()),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        let span = format!(r#"rpc{{rpc="RunPodSandbox" pod_sandbox_id="{id}"}}"#);
        // Logged from inside the detached task, and the boundary's own line.
        for needle in ["pod sandbox ready", ": ok elapsed_us="] {
            let line = log.line(needle);
            assert!(line.contains(&span), "{line}");
        }

        // A polling RPC: its failure warns with its span at info...
        let err = api
            .pod_sandbox_status(Request::new(PodSandboxStatusRequest {
                pod_sandbox_id: "f00d".into(),
                ..Default::default()
            }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
        let failed = log.line("PodSandboxStatus");
        assert!(
            failed.contains(r#"rpc{rpc="PodSandboxStatus" pod_sandbox_id="f00d"}"#)
                && failed.contains("WARN")
                && failed.contains("failed"),
            "{failed}"
        );
        // ...while its success still prints nothing at info.
        let before = log.lines().len();
        api.list_pod_sandbox(Request::new(ListPodSandboxRequest::default()))
            .await
            .unwrap();
        api.pod_sandbox_status(Request::new(PodSandboxStatusRequest {
            pod_sandbox_id: id,
            ..Default::default()
        }))
        .await
        .unwrap();
        assert_eq!(log.lines().len(), before, "{:#?}", log.lines());
    }
}

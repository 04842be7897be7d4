//! RPCs that are not built yet. Each answers `UNIMPLEMENTED` naming itself, so a
//! kubelet or crictl sees a clear "not yet" instead of a fake success. When an
//! RPC is built, move its method out of here into its own `<object>_<verb>.rs`.

use berth_proto::v1::*;

use super::{BoxStream, CriService};
use crate::error::{Error, Result};

fn unimplemented<T>(rpc: &str) -> Result<T> {
    Err(Error::Unimplemented(format!(
        "{rpc} is not implemented by berth yet"
    )))
}

impl CriService {
    pub(crate) async fn run_pod_sandbox(
        &self,
        _req: RunPodSandboxRequest,
    ) -> Result<RunPodSandboxResponse> {
        unimplemented("RunPodSandbox")
    }
    pub(crate) async fn stop_pod_sandbox(
        &self,
        _req: StopPodSandboxRequest,
    ) -> Result<StopPodSandboxResponse> {
        unimplemented("StopPodSandbox")
    }
    pub(crate) async fn remove_pod_sandbox(
        &self,
        _req: RemovePodSandboxRequest,
    ) -> Result<RemovePodSandboxResponse> {
        unimplemented("RemovePodSandbox")
    }
    pub(crate) async fn pod_sandbox_status(
        &self,
        _req: PodSandboxStatusRequest,
    ) -> Result<PodSandboxStatusResponse> {
        unimplemented("PodSandboxStatus")
    }
    pub(crate) async fn list_pod_sandbox(
        &self,
        _req: ListPodSandboxRequest,
    ) -> Result<ListPodSandboxResponse> {
        unimplemented("ListPodSandbox")
    }
    pub(crate) async fn stream_pod_sandboxes(
        &self,
        _req: StreamPodSandboxesRequest,
    ) -> Result<BoxStream<StreamPodSandboxesResponse>> {
        unimplemented("StreamPodSandboxes")
    }
    pub(crate) async fn create_container(
        &self,
        _req: CreateContainerRequest,
    ) -> Result<CreateContainerResponse> {
        unimplemented("CreateContainer")
    }
    pub(crate) async fn start_container(
        &self,
        _req: StartContainerRequest,
    ) -> Result<StartContainerResponse> {
        unimplemented("StartContainer")
    }
    pub(crate) async fn stop_container(
        &self,
        _req: StopContainerRequest,
    ) -> Result<StopContainerResponse> {
        unimplemented("StopContainer")
    }
    pub(crate) async fn remove_container(
        &self,
        _req: RemoveContainerRequest,
    ) -> Result<RemoveContainerResponse> {
        unimplemented("RemoveContainer")
    }
    pub(crate) async fn list_containers(
        &self,
        _req: ListContainersRequest,
    ) -> Result<ListContainersResponse> {
        unimplemented("ListContainers")
    }
    pub(crate) async fn stream_containers(
        &self,
        _req: StreamContainersRequest,
    ) -> Result<BoxStream<StreamContainersResponse>> {
        unimplemented("StreamContainers")
    }
    pub(crate) async fn container_status(
        &self,
        _req: ContainerStatusRequest,
    ) -> Result<ContainerStatusResponse> {
        unimplemented("ContainerStatus")
    }
    pub(crate) async fn update_container_resources(
        &self,
        _req: UpdateContainerResourcesRequest,
    ) -> Result<UpdateContainerResourcesResponse> {
        unimplemented("UpdateContainerResources")
    }
    pub(crate) async fn reopen_container_log(
        &self,
        _req: ReopenContainerLogRequest,
    ) -> Result<ReopenContainerLogResponse> {
        unimplemented("ReopenContainerLog")
    }
    pub(crate) async fn exec_sync(&self, _req: ExecSyncRequest) -> Result<ExecSyncResponse> {
        unimplemented("ExecSync")
    }
    pub(crate) async fn exec(&self, _req: ExecRequest) -> Result<ExecResponse> {
        unimplemented("Exec")
    }
    pub(crate) async fn attach(&self, _req: AttachRequest) -> Result<AttachResponse> {
        unimplemented("Attach")
    }
    pub(crate) async fn port_forward(
        &self,
        _req: PortForwardRequest,
    ) -> Result<PortForwardResponse> {
        unimplemented("PortForward")
    }
    pub(crate) async fn container_stats(
        &self,
        _req: ContainerStatsRequest,
    ) -> Result<ContainerStatsResponse> {
        unimplemented("ContainerStats")
    }
    pub(crate) async fn list_container_stats(
        &self,
        _req: ListContainerStatsRequest,
    ) -> Result<ListContainerStatsResponse> {
        unimplemented("ListContainerStats")
    }
    pub(crate) async fn stream_container_stats(
        &self,
        _req: StreamContainerStatsRequest,
    ) -> Result<BoxStream<StreamContainerStatsResponse>> {
        unimplemented("StreamContainerStats")
    }
    pub(crate) async fn pod_sandbox_stats(
        &self,
        _req: PodSandboxStatsRequest,
    ) -> Result<PodSandboxStatsResponse> {
        unimplemented("PodSandboxStats")
    }
    pub(crate) async fn list_pod_sandbox_stats(
        &self,
        _req: ListPodSandboxStatsRequest,
    ) -> Result<ListPodSandboxStatsResponse> {
        unimplemented("ListPodSandboxStats")
    }
    pub(crate) async fn stream_pod_sandbox_stats(
        &self,
        _req: StreamPodSandboxStatsRequest,
    ) -> Result<BoxStream<StreamPodSandboxStatsResponse>> {
        unimplemented("StreamPodSandboxStats")
    }
    pub(crate) async fn update_runtime_config(
        &self,
        _req: UpdateRuntimeConfigRequest,
    ) -> Result<UpdateRuntimeConfigResponse> {
        unimplemented("UpdateRuntimeConfig")
    }
    pub(crate) async fn checkpoint_container(
        &self,
        _req: CheckpointContainerRequest,
    ) -> Result<CheckpointContainerResponse> {
        unimplemented("CheckpointContainer")
    }
    pub(crate) async fn get_container_events(
        &self,
        _req: GetEventsRequest,
    ) -> Result<BoxStream<ContainerEventResponse>> {
        unimplemented("GetContainerEvents")
    }
    pub(crate) async fn list_metric_descriptors(
        &self,
        _req: ListMetricDescriptorsRequest,
    ) -> Result<ListMetricDescriptorsResponse> {
        unimplemented("ListMetricDescriptors")
    }
    pub(crate) async fn list_pod_sandbox_metrics(
        &self,
        _req: ListPodSandboxMetricsRequest,
    ) -> Result<ListPodSandboxMetricsResponse> {
        unimplemented("ListPodSandboxMetrics")
    }
    pub(crate) async fn stream_pod_sandbox_metrics(
        &self,
        _req: StreamPodSandboxMetricsRequest,
    ) -> Result<BoxStream<StreamPodSandboxMetricsResponse>> {
        unimplemented("StreamPodSandboxMetrics")
    }
    pub(crate) async fn update_pod_sandbox_resources(
        &self,
        _req: UpdatePodSandboxResourcesRequest,
    ) -> Result<UpdatePodSandboxResourcesResponse> {
        unimplemented("UpdatePodSandboxResources")
    }
    pub(crate) async fn list_images(&self, _req: ListImagesRequest) -> Result<ListImagesResponse> {
        unimplemented("ListImages")
    }
    pub(crate) async fn stream_images(
        &self,
        _req: StreamImagesRequest,
    ) -> Result<BoxStream<StreamImagesResponse>> {
        unimplemented("StreamImages")
    }
    pub(crate) async fn image_status(
        &self,
        _req: ImageStatusRequest,
    ) -> Result<ImageStatusResponse> {
        unimplemented("ImageStatus")
    }
    pub(crate) async fn pull_image(&self, _req: PullImageRequest) -> Result<PullImageResponse> {
        unimplemented("PullImage")
    }
    pub(crate) async fn remove_image(
        &self,
        _req: RemoveImageRequest,
    ) -> Result<RemoveImageResponse> {
        unimplemented("RemoveImage")
    }
    pub(crate) async fn image_fs_info(
        &self,
        _req: ImageFsInfoRequest,
    ) -> Result<ImageFsInfoResponse> {
        unimplemented("ImageFsInfo")
    }
}

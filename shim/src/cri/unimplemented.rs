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
    pub(crate) async fn checkpoint_container(
        &self,
        _req: CheckpointContainerRequest,
    ) -> Result<CheckpointContainerResponse> {
        unimplemented("CheckpointContainer")
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
}

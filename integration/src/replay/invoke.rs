//! Turning a trace line into a real CRI call: the request (protobuf JSON with
//! proto field names, as recorded) is decoded into the prost type through
//! berth-proto's pbjson serde impls, sent, and the answer encoded back to
//! protobuf JSON; the reference answer goes through the same types so both
//! sides compare in one spelling (camelCase, defaults left out).

use serde_json::Value;

use crate::client::Cri;

/// Berth's answer and the reference's, both as protobuf JSON.
#[derive(Debug)]
pub struct Answer {
    pub ours: Result<Value, tonic::Status>,
    /// The reference answer re-encoded, `None` when the call failed there.
    pub reference: Option<Value>,
}

macro_rules! unary {
    ($cri:ident . $svc:ident . $method:ident, $Req:ident, $Resp:ident, $request:expr, $reference:expr) => {{
        use berth_proto::v1::{$Req, $Resp};
        let req: $Req = serde_json::from_value($request)
            .map_err(|e| format!("request is not a {}: {e}", stringify!($Req)))?;
        let reference = match $reference {
            Some(v) => {
                let r: $Resp = serde_json::from_value(v)
                    .map_err(|e| format!("reference answer is not a {}: {e}", stringify!($Resp)))?;
                Some(serde_json::to_value(&r).map_err(|e| e.to_string())?)
            }
            None => None,
        };
        let ours = match $cri.$svc.$method(req).await {
            Ok(r) => Ok(serde_json::to_value(r.into_inner()).map_err(|e| e.to_string())?),
            Err(s) => Err(s),
        };
        Ok(Answer { ours, reference })
    }};
}

/// Sends `request` as RPC `rpc` (`Version`, `RunPodSandbox`, …); an error
/// is a trace line the replayer cannot send (unknown RPC, undecodable message).
pub async fn invoke(
    mut cri: Cri,
    rpc: String,
    request: Value,
    reference: Option<Value>,
) -> Result<Answer, String> {
    let (q, r) = (request, reference);
    match rpc.as_str() {
        "Version" => unary!(cri.runtime.version, VersionRequest, VersionResponse, q, r),
        "RuntimeConfig" => unary!(
            cri.runtime.runtime_config,
            RuntimeConfigRequest,
            RuntimeConfigResponse,
            q,
            r
        ),
        "Status" => unary!(cri.runtime.status, StatusRequest, StatusResponse, q, r),
        "UpdateRuntimeConfig" => unary!(
            cri.runtime.update_runtime_config,
            UpdateRuntimeConfigRequest,
            UpdateRuntimeConfigResponse,
            q,
            r
        ),
        "RunPodSandbox" => unary!(
            cri.runtime.run_pod_sandbox,
            RunPodSandboxRequest,
            RunPodSandboxResponse,
            q,
            r
        ),
        "StopPodSandbox" => unary!(
            cri.runtime.stop_pod_sandbox,
            StopPodSandboxRequest,
            StopPodSandboxResponse,
            q,
            r
        ),
        "RemovePodSandbox" => unary!(
            cri.runtime.remove_pod_sandbox,
            RemovePodSandboxRequest,
            RemovePodSandboxResponse,
            q,
            r
        ),
        "PodSandboxStatus" => unary!(
            cri.runtime.pod_sandbox_status,
            PodSandboxStatusRequest,
            PodSandboxStatusResponse,
            q,
            r
        ),
        "ListPodSandbox" => unary!(
            cri.runtime.list_pod_sandbox,
            ListPodSandboxRequest,
            ListPodSandboxResponse,
            q,
            r
        ),
        "UpdatePodSandboxResources" => unary!(
            cri.runtime.update_pod_sandbox_resources,
            UpdatePodSandboxResourcesRequest,
            UpdatePodSandboxResourcesResponse,
            q,
            r
        ),
        "CreateContainer" => unary!(
            cri.runtime.create_container,
            CreateContainerRequest,
            CreateContainerResponse,
            q,
            r
        ),
        "StartContainer" => unary!(
            cri.runtime.start_container,
            StartContainerRequest,
            StartContainerResponse,
            q,
            r
        ),
        "StopContainer" => unary!(
            cri.runtime.stop_container,
            StopContainerRequest,
            StopContainerResponse,
            q,
            r
        ),
        "RemoveContainer" => unary!(
            cri.runtime.remove_container,
            RemoveContainerRequest,
            RemoveContainerResponse,
            q,
            r
        ),
        "ListContainers" => unary!(
            cri.runtime.list_containers,
            ListContainersRequest,
            ListContainersResponse,
            q,
            r
        ),
        "ContainerStatus" => unary!(
            cri.runtime.container_status,
            ContainerStatusRequest,
            ContainerStatusResponse,
            q,
            r
        ),
        "UpdateContainerResources" => unary!(
            cri.runtime.update_container_resources,
            UpdateContainerResourcesRequest,
            UpdateContainerResourcesResponse,
            q,
            r
        ),
        "ReopenContainerLog" => unary!(
            cri.runtime.reopen_container_log,
            ReopenContainerLogRequest,
            ReopenContainerLogResponse,
            q,
            r
        ),
        "ExecSync" => unary!(
            cri.runtime.exec_sync,
            ExecSyncRequest,
            ExecSyncResponse,
            q,
            r
        ),
        "Exec" => unary!(cri.runtime.exec, ExecRequest, ExecResponse, q, r),
        "Attach" => unary!(cri.runtime.attach, AttachRequest, AttachResponse, q, r),
        "PortForward" => unary!(
            cri.runtime.port_forward,
            PortForwardRequest,
            PortForwardResponse,
            q,
            r
        ),
        "ContainerStats" => unary!(
            cri.runtime.container_stats,
            ContainerStatsRequest,
            ContainerStatsResponse,
            q,
            r
        ),
        "ListContainerStats" => unary!(
            cri.runtime.list_container_stats,
            ListContainerStatsRequest,
            ListContainerStatsResponse,
            q,
            r
        ),
        "PodSandboxStats" => unary!(
            cri.runtime.pod_sandbox_stats,
            PodSandboxStatsRequest,
            PodSandboxStatsResponse,
            q,
            r
        ),
        "ListPodSandboxStats" => unary!(
            cri.runtime.list_pod_sandbox_stats,
            ListPodSandboxStatsRequest,
            ListPodSandboxStatsResponse,
            q,
            r
        ),
        "ListMetricDescriptors" => unary!(
            cri.runtime.list_metric_descriptors,
            ListMetricDescriptorsRequest,
            ListMetricDescriptorsResponse,
            q,
            r
        ),
        "ListPodSandboxMetrics" => unary!(
            cri.runtime.list_pod_sandbox_metrics,
            ListPodSandboxMetricsRequest,
            ListPodSandboxMetricsResponse,
            q,
            r
        ),
        "CheckpointContainer" => unary!(
            cri.runtime.checkpoint_container,
            CheckpointContainerRequest,
            CheckpointContainerResponse,
            q,
            r
        ),
        "ListImages" => unary!(
            cri.image.list_images,
            ListImagesRequest,
            ListImagesResponse,
            q,
            r
        ),
        "ImageStatus" => unary!(
            cri.image.image_status,
            ImageStatusRequest,
            ImageStatusResponse,
            q,
            r
        ),
        "PullImage" => unary!(
            cri.image.pull_image,
            PullImageRequest,
            PullImageResponse,
            q,
            r
        ),
        "RemoveImage" => unary!(
            cri.image.remove_image,
            RemoveImageRequest,
            RemoveImageResponse,
            q,
            r
        ),
        "ImageFsInfo" => unary!(
            cri.image.image_fs_info,
            ImageFsInfoRequest,
            ImageFsInfoResponse,
            q,
            r
        ),
        other => Err(format!(
            "the replayer has no unary call for {other} (streaming RPCs need their own driver)"
        )),
    }
}

/// The gRPC code name of a status, as the trace spells it (`NOT_FOUND`).
pub fn code_name(s: &tonic::Status) -> String {
    use tonic::Code::*;
    match s.code() {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
    .to_string()
}

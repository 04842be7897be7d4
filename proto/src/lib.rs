//! The Kubernetes CRI v1 API (`runtime.v1`): prost messages plus tonic clients and
//! servers for `RuntimeService` and `ImageService`, generated from `proto/api.proto`.
//! The servers send the pod and container list replies as [`encoded::EncodedList`]s
//! of pre-encoded messages; clients decode the generated messages as usual.

/// Generated code, grouped by protobuf package.
pub mod runtime {
    /// Package `runtime.v1`.
    pub mod v1 {
        #![allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
        tonic::include_proto!("runtime.v1");
        include!(concat!(env!("OUT_DIR"), "/runtime.v1.serde.rs"));
        // `runtime_service_server` and `image_service_server` (see build.rs).
        include!(concat!(env!("OUT_DIR"), "/server/runtime.v1.rs"));
    }
}

pub use runtime::v1;

pub mod encoded;

/// The 41 RPCs of the CRI v1 API (Kubernetes 1.36) by name: the 35 of
/// `RuntimeService`, then the 6 of `ImageService`
/// ([`RUNTIME_RPC_COUNT`] splits them). `tests/rpc_surface.rs` holds the
/// `.proto` and the compiled services to exactly this list; berthd's metrics
/// keep one slot per entry.
pub const RPCS: [&str; 41] = [
    "Version",
    "RunPodSandbox",
    "StopPodSandbox",
    "RemovePodSandbox",
    "PodSandboxStatus",
    "ListPodSandbox",
    "StreamPodSandboxes",
    "CreateContainer",
    "StartContainer",
    "StopContainer",
    "RemoveContainer",
    "ListContainers",
    "StreamContainers",
    "ContainerStatus",
    "UpdateContainerResources",
    "ReopenContainerLog",
    "ExecSync",
    "Exec",
    "Attach",
    "PortForward",
    "ContainerStats",
    "ListContainerStats",
    "StreamContainerStats",
    "PodSandboxStats",
    "ListPodSandboxStats",
    "StreamPodSandboxStats",
    "UpdateRuntimeConfig",
    "Status",
    "CheckpointContainer",
    "GetContainerEvents",
    "ListMetricDescriptors",
    "ListPodSandboxMetrics",
    "StreamPodSandboxMetrics",
    "RuntimeConfig",
    "UpdatePodSandboxResources",
    "ListImages",
    "StreamImages",
    "ImageStatus",
    "PullImage",
    "RemoveImage",
    "ImageFsInfo",
];

/// How many of [`RPCS`] belong to `RuntimeService` (the rest: `ImageService`).
pub const RUNTIME_RPC_COUNT: usize = 35;

/// Encoded `FileDescriptorSet` of `api.proto`, for gRPC reflection and introspection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/runtime_v1_descriptor.bin"));

// Registry credentials must never reach a log through `{:?}`: only say which
// fields are set.
impl std::fmt::Debug for v1::AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn redact(s: &str) -> &'static str {
            if s.is_empty() {
                ""
            } else {
                "<redacted>"
            }
        }
        f.debug_struct("AuthConfig")
            .field("username", &self.username)
            .field("password", &redact(&self.password))
            .field("auth", &redact(&self.auth))
            .field("server_address", &self.server_address)
            .field("identity_token", &redact(&self.identity_token))
            .field("registry_token", &redact(&self.registry_token))
            .finish()
    }
}

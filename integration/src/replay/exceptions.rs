//! Where Berth is right and the reference runtime (containerd 1.6) is not:
//! each entry names the call, what the reference did, why Berth differs and
//! what Berth must answer instead. Everything not listed here is held to the
//! reference's answer.

use serde_json::Value;

/// A call whose reference answer is not the one Berth must give.
#[derive(Debug)]
pub struct Exception {
    /// The RPC name.
    pub rpc: &'static str,
    /// The reference's gRPC code for it.
    pub reference_code: &'static str,
    /// Why Berth answers differently.
    pub reason: &'static str,
    /// What Berth's answer (protobuf JSON) must satisfy instead.
    pub check: fn(&Value) -> Result<(), String>,
}

/// The table.
pub const EXCEPTIONS: &[Exception] = &[Exception {
    rpc: "RuntimeConfig",
    reference_code: "UNIMPLEMENTED",
    reason: "containerd 1.6 lacks the RPC and the kubelet falls back to its own cgroupDriver; \
             a runtime that implements it must report the cgroupfs driver these hosts use",
    check: cgroupfs_driver,
}];

/// Fields of an OK answer where Berth says something else on purpose:
/// (RPC, field, reason).
pub const FIELD_EXCEPTIONS: &[(&str, &str, &str)] = &[(
    "ContainerStatus",
    "status.image.image",
    "containerd 1.6 reports the image's first tag (the name another pod pulled it by); \
     Berth reports the name this pod's spec gave (user_specified_image), which the \
     kubelet shows as the container's image",
)];

/// The exception for a call answered with `reference_code`, if any.
pub fn find(rpc: &str, reference_code: &str) -> Option<&'static Exception> {
    EXCEPTIONS
        .iter()
        .find(|e| e.rpc == rpc && e.reference_code == reference_code)
}

fn cgroupfs_driver(ours: &Value) -> Result<(), String> {
    match ours["linux"]["cgroupDriver"].as_str() {
        Some("CGROUPFS") => Ok(()),
        other => Err(format!(
            "linux.cgroupDriver: want CGROUPFS, Berth says {other:?}"
        )),
    }
}

/// Images the reference lists without the kubelet ever pulling them, by tag
/// prefix, with the reason Berth does not have them.
pub const REFERENCE_ONLY_IMAGES: &[(&str, &str)] = &[(
    "registry.k8s.io/pause:",
    "containerd's sandbox image, pulled by containerd itself (never through CRI); \
     Berth runs pods without a pause image",
)];

/// The reason a listed reference image is not expected from Berth, if it is one.
pub fn reference_only_image(tag: &str) -> Option<&'static str> {
    REFERENCE_ONLY_IMAGES
        .iter()
        .find(|(prefix, _)| tag.starts_with(prefix))
        .map(|(_, why)| *why)
}

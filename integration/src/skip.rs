//! Why an end-to-end test cannot run on this machine. Tests print the reason and
//! return early instead of failing where a prerequisite is genuinely absent
//! (not root, a Debian package not installed). A missing berthd is not such a
//! reason: it is our own binary, so its absence fails the test.

/// `Some(reason)` unless running as root (berthd needs namespaces, mounts, cgroups).
pub fn not_root() -> Option<String> {
    (!nix::unistd::geteuid().is_root()).then(|| "needs root".to_string())
}

/// `Some(reason)` when Debian's docker-registry is not installed.
pub fn no_registry() -> Option<String> {
    crate::registry::Registry::unavailable_reason()
}

/// `Some(reason)` when Debian's busybox-static is not installed.
pub fn no_busybox() -> Option<String> {
    (!crate::test_images::busybox_available()).then(|| {
        format!(
            "{} not found (apt-get install busybox-static)",
            crate::test_images::BUSYBOX
        )
    })
}

/// `Some(reason)` unless [`crate::env::TestEnv::start_for_pods`] can run here:
/// root, the registry and busybox-static.
pub fn no_pod_env() -> Option<String> {
    first(&[not_root(), no_registry(), no_busybox()])
}

/// `Some(reason)` unless pods on a [`crate::bridge::TestBridge`] can run here:
/// what [`no_pod_env`] needs plus the CNI bridge plugins.
pub fn no_bridge_pod_env() -> Option<String> {
    first(&[no_pod_env(), crate::bridge::unavailable_reason()])
}

/// The first reason among several, e.g. `first(&[no_registry(), no_busybox()])`.
pub fn first(reasons: &[Option<String>]) -> Option<String> {
    reasons.iter().flatten().next().cloned()
}

/// Returns early from a test (with `$ret`, default `()`) when `$reason` is `Some`,
/// printing it so a skipped run is visible in the output.
#[macro_export]
macro_rules! skip_if {
    ($reason:expr) => {
        $crate::skip_if!($reason, ())
    };
    ($reason:expr, $ret:expr) => {
        if let Some(reason) = $reason {
            eprintln!("SKIPPED {}: {}", module_path!(), reason);
            return $ret;
        }
    };
}

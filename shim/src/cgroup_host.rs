//! The node's cgroup set-up as berthd reports it (`Status` verbose info, for
//! `crictl info`) and whether the configured cgroup driver can work on it.
//!
//! berth writes cgroupfs itself; with `cgroup_driver = "systemd"` it names
//! cgroups as systemd slices and scopes (what a kubelet on the systemd driver
//! sends) but does not ask systemd to create them over D-Bus. That is sound
//! only where systemd runs and owns the tree; without a running systemd the
//! kubelet and berth would disagree about who manages the slices, so berthd
//! refuses to start instead of failing at the first pod.

use std::path::Path;

use berth_runtime::cgroups::{detect_layout, Layout};

use crate::error::{Error, Result};

/// Where systemd, when it is PID 1, leaves its marker (sd_booted(3)).
pub const SYSTEMD_RUN_DIR: &str = "/run/systemd/system";

/// Refuses `cgroup_driver = "systemd"` on a node where systemd is not running.
pub fn check_driver(driver: &str, systemd_run_dir: &Path) -> Result<()> {
    if driver == "systemd" && !systemd_run_dir.is_dir() {
        return Err(Error::FailedPrecondition(format!(
            "config cgroup_driver: \"systemd\" needs a running systemd ({} is missing); \
             use cgroup_driver = \"cgroupfs\" (and the kubelet's --cgroup-driver=cgroupfs) on this node",
            systemd_run_dir.display()
        )));
    }
    Ok(())
}

/// The layout under `root` as a JSON document: `version` (`v1`, `v2` or
/// `hybrid`), the `root`, the `driver`, and the `controllers` a container can
/// be given (v2: the root's `cgroup.controllers`; v1: the mounted hierarchies).
pub fn describe(root: &Path, driver: &str) -> serde_json::Value {
    let layout = detect_layout(root);
    let version = match &layout {
        Ok(Layout::V2) => "v2",
        Ok(Layout::V1) => "v1",
        Ok(Layout::Hybrid) => "hybrid",
        Err(_) => "none",
    };
    let mut controllers: Vec<String> = match layout {
        Ok(Layout::V2) => std::fs::read_to_string(root.join("cgroup.controllers"))
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect(),
        Ok(_) => std::fs::read_dir(root)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_dir() && !e.path().is_symlink())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n != "unified" && n != "systemd")
            .collect(),
        Err(_) => Vec::new(),
    };
    controllers.sort();
    serde_json::json!({
        "version": version,
        "root": root.display().to_string(),
        "driver": driver,
        "controllers": controllers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_driver_without_systemd_is_refused_naming_the_key() {
        let d = tempfile::tempdir().unwrap();
        let e = check_driver("systemd", &d.path().join("system"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cgroup_driver") && e.contains("cgroupfs"), "{e}");
        std::fs::create_dir(d.path().join("system")).unwrap();
        check_driver("systemd", &d.path().join("system")).unwrap();
        check_driver("cgroupfs", &d.path().join("nothing")).unwrap();
    }

    #[test]
    fn describes_a_v2_tree_by_its_controllers_file() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("cgroup.controllers"), "cpu memory pids io\n").unwrap();
        let v = describe(d.path(), "cgroupfs");
        assert_eq!(v["version"], "v2");
        assert_eq!(v["driver"], "cgroupfs");
        assert_eq!(
            v["controllers"],
            serde_json::json!(["cpu", "io", "memory", "pids"])
        );
    }

    #[test]
    fn describes_a_v1_tree_by_its_hierarchies() {
        let d = tempfile::tempdir().unwrap();
        for c in ["memory", "cpu", "pids"] {
            std::fs::create_dir(d.path().join(c)).unwrap();
        }
        let v = describe(d.path(), "cgroupfs");
        assert_eq!(v["version"], "v1");
        assert_eq!(
            v["controllers"],
            serde_json::json!(["cpu", "memory", "pids"])
        );
    }
}

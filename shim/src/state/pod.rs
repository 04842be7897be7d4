//! The persisted record of a pod sandbox and its state machine.

use std::path::PathBuf;

use berth_proto::v1::{self, PodSandboxConfig};
use serde::{Deserialize, Serialize};

/// Lifecycle of a pod sandbox (see the module diagram in [`crate::state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodState {
    /// RunPodSandbox is still working on it; recovery rolls it back.
    Creating,
    /// Namespaces are pinned; containers may be created.
    Ready,
    /// Stopped: containers killed, namespaces released.
    NotReady,
}

impl PodState {
    /// Whether CreateContainer may add a container to the pod.
    pub fn can_create_container(self) -> bool {
        self == PodState::Ready
    }
    /// Whether StopPodSandbox has work to do.
    pub fn can_stop(self) -> bool {
        self == PodState::Ready
    }
    /// Whether RemovePodSandbox may proceed (a pod still being created may not).
    pub fn can_remove(self) -> bool {
        self != PodState::Creating
    }
    /// The CRI state.
    pub fn to_cri(self) -> v1::PodSandboxState {
        match self {
            PodState::Ready => v1::PodSandboxState::SandboxReady,
            PodState::Creating | PodState::NotReady => v1::PodSandboxState::SandboxNotready,
        }
    }
}

/// Where a pod's pinned namespaces are; `None` means the node's namespace is used.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodNamespacePaths {
    pub net: Option<PathBuf>,
    pub ipc: Option<PathBuf>,
    pub uts: Option<PathBuf>,
    /// The pod's shared PID namespace (pid mode POD), held by a pause init.
    #[serde(default)]
    pub pid: Option<PathBuf>,
    /// The pod's user namespace (userns_options mode POD).
    #[serde(default)]
    pub user: Option<PathBuf>,
}

/// Everything berthd keeps about one pod sandbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodRecord {
    /// [`crate::state::RECORD_VERSION`] when written.
    pub version: u32,
    /// 64 hex digits.
    pub id: String,
    /// The reserved name, `name_namespace_uid_attempt`.
    pub name: String,
    /// The request's config: metadata, labels, annotations, DNS, linux options.
    #[serde(with = "super::proto_bytes")]
    pub config: PodSandboxConfig,
    /// RuntimeClass handler it was created for.
    pub runtime_handler: String,
    pub state: PodState,
    /// Unix nanoseconds.
    pub created_at: i64,
    /// `<state_dir>/pods/<id>`: hostname, hosts, resolv.conf.
    pub pod_dir: PathBuf,
    /// Directory of the namespace pins, when berthd created any.
    pub ns_dir: Option<PathBuf>,
    pub namespaces: PodNamespacePaths,
    /// Cgroup parent of the pod's containers.
    pub cgroup_parent: String,
    /// Addresses CNI gave the pod (none for host network).
    #[serde(default)]
    pub ips: Option<crate::network::PodIps>,
    /// Pod-level resources from the last UpdatePodSandboxResources (none
    /// before the first one).
    #[serde(default)]
    pub resources: Option<PodResources>,
    /// Set once a StopPodSandbox has finished: network torn down (CNI DEL),
    /// namespaces unpinned, shm unmounted. Another stop (RemovePodSandbox
    /// stops first) then skips that work instead of running CNI DEL again.
    /// False for a pod made NotReady any other way (a create that could not
    /// be undone, recovery), which still needs the whole teardown.
    #[serde(default)]
    pub stopped_cleanly: bool,
}

/// What kubelet last told berthd about the pod's cgroup: the sandbox overhead
/// and the sum of its containers' resources.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodResources {
    #[serde(with = "super::proto_bytes")]
    pub overhead: v1::LinuxContainerResources,
    #[serde(with = "super::proto_bytes")]
    pub resources: v1::LinuxContainerResources,
}

impl PodResources {
    /// The pod cgroup's memory limit (resources plus overhead); `None` when
    /// neither sets one.
    pub fn memory_limit(&self) -> Option<i64> {
        let sum = self.resources.memory_limit_in_bytes.max(0)
            + self.overhead.memory_limit_in_bytes.max(0);
        (sum > 0).then_some(sum)
    }
}

impl PodRecord {
    /// The pod's metadata (always present: RunPodSandbox refuses a config without it).
    pub fn metadata(&self) -> v1::PodSandboxMetadata {
        self.config.metadata.clone().unwrap_or_default()
    }

    /// kubelet's unique pod sandbox name: `name_namespace_uid_attempt`.
    pub fn reservation_name(md: &v1::PodSandboxMetadata) -> String {
        format!("{}_{}_{}_{}", md.name, md.namespace, md.uid, md.attempt)
    }

    /// The namespace options the pod was created with (absent means all POD).
    pub fn namespace_options(&self) -> v1::NamespaceOption {
        self.config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone())
            .unwrap_or_default()
    }

    /// The short form used by ListPodSandbox.
    pub fn to_cri(&self) -> v1::PodSandbox {
        v1::PodSandbox {
            id: self.id.clone(),
            metadata: Some(self.metadata()),
            state: self.state.to_cri() as i32,
            created_at: self.created_at,
            labels: self.config.labels.clone(),
            annotations: self.config.annotations.clone(),
            runtime_handler: self.runtime_handler.clone(),
        }
    }

    /// The full status (network status stays empty until CNI is wired).
    pub fn to_status(&self) -> v1::PodSandboxStatus {
        v1::PodSandboxStatus {
            id: self.id.clone(),
            metadata: Some(self.metadata()),
            state: self.state.to_cri() as i32,
            created_at: self.created_at,
            network: Some(self.ips.as_ref().map(|i| i.to_cri()).unwrap_or_default()),
            linux: Some(v1::LinuxPodSandboxStatus {
                namespaces: Some(v1::Namespace {
                    options: Some(self.namespace_options()),
                }),
            }),
            labels: self.config.labels.clone(),
            annotations: self.config.annotations.clone(),
            runtime_handler: self.runtime_handler.clone(),
        }
    }
}

impl super::Listed for PodRecord {
    type Item = super::Listing<v1::PodSandbox>;
    fn listed(&self) -> Option<super::Listing<v1::PodSandbox>> {
        (self.state != PodState::Creating).then(|| super::Listing::new(self.to_cri()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_follow_the_diagram() {
        use PodState::*;
        assert!(Ready.can_create_container());
        assert!(!NotReady.can_create_container());
        assert!(!Creating.can_create_container());
        assert!(Ready.can_stop() && !NotReady.can_stop());
        assert!(Ready.can_remove() && NotReady.can_remove() && !Creating.can_remove());
        assert_eq!(Creating.to_cri(), v1::PodSandboxState::SandboxNotready);
        assert_eq!(Ready.to_cri(), v1::PodSandboxState::SandboxReady);
    }

    #[test]
    fn record_round_trips_through_json_with_its_config() {
        let mut config = PodSandboxConfig {
            metadata: Some(v1::PodSandboxMetadata {
                name: "web".into(),
                uid: "u1".into(),
                namespace: "default".into(),
                attempt: 2,
            }),
            hostname: "web-0".into(),
            ..Default::default()
        };
        config.labels.insert("app".into(), "web".into());
        let rec = PodRecord {
            version: crate::state::RECORD_VERSION,
            id: "a".repeat(64),
            name: PodRecord::reservation_name(config.metadata.as_ref().unwrap()),
            config,
            runtime_handler: String::new(),
            state: PodState::Ready,
            created_at: 5,
            pod_dir: "/run/berth/pods/a".into(),
            ns_dir: None,
            namespaces: PodNamespacePaths::default(),
            cgroup_parent: "/berth".into(),
            ips: None,
            resources: Some(PodResources {
                overhead: v1::LinuxContainerResources {
                    memory_limit_in_bytes: 1 << 20,
                    ..Default::default()
                },
                resources: v1::LinuxContainerResources {
                    cpu_shares: 512,
                    memory_limit_in_bytes: 64 << 20,
                    ..Default::default()
                },
            }),
            stopped_cleanly: true,
        };
        assert_eq!(rec.name, "web_default_u1_2");
        let json = serde_json::to_string(&rec).unwrap();
        let back: PodRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, rec);
        assert_eq!(back.to_cri().labels["app"], "web");
        assert_eq!(
            back.resources.unwrap().memory_limit(),
            Some((64 << 20) + (1 << 20))
        );
        // A record written before the field existed still loads.
        let mut old: serde_json::Value = serde_json::from_str(&json).unwrap();
        old.as_object_mut().unwrap().remove("resources");
        let old: PodRecord = serde_json::from_value(old).unwrap();
        assert_eq!(old.resources, None);
    }
}

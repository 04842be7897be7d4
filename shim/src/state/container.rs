//! The persisted record of a container and its state machine.

use std::path::PathBuf;

use berth_proto::v1::{self, ContainerConfig};
use serde::{Deserialize, Serialize};

/// Lifecycle of a container (see the module diagram in [`crate::state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    /// CreateContainer is still working on it; recovery rolls it back.
    Creating,
    /// The init exists and waits to be started.
    Created,
    Running,
    /// The init ended; exit code, time and reason are known (or marked unknown).
    Exited,
    /// A failed create could not be fully undone; only removal is allowed.
    Unknown,
}

impl ContainerState {
    /// Whether StartContainer may proceed.
    pub fn can_start(self) -> bool {
        self == ContainerState::Created
    }
    /// Whether StopContainer has a process to signal.
    pub fn can_stop(self) -> bool {
        matches!(self, ContainerState::Created | ContainerState::Running)
    }
    /// Whether RemoveContainer may proceed (force-stopping a live container first).
    pub fn can_remove(self) -> bool {
        self != ContainerState::Creating
    }
    /// Whether a process may still be running (exec, update, log reopen).
    pub fn is_running(self) -> bool {
        self == ContainerState::Running
    }
    /// The CRI state.
    pub fn to_cri(self) -> v1::ContainerState {
        match self {
            ContainerState::Creating | ContainerState::Created => {
                v1::ContainerState::ContainerCreated
            }
            ContainerState::Running => v1::ContainerState::ContainerRunning,
            ContainerState::Exited => v1::ContainerState::ContainerExited,
            ContainerState::Unknown => v1::ContainerState::ContainerUnknown,
        }
    }
}

/// Everything berthd keeps about one container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// [`crate::state::RECORD_VERSION`] when written.
    pub version: u32,
    /// 64 hex digits.
    pub id: String,
    pub pod_id: String,
    /// The reserved name, `name_podname_podnamespace_poduid_attempt`.
    pub name: String,
    /// The request's config: metadata, image, command, env, mounts, labels, ...
    #[serde(with = "super::proto_bytes")]
    pub config: ContainerConfig,
    pub state: ContainerState,
    /// Unix nanoseconds; 0 when not reached.
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    /// `Completed`, `Error`, `OOMKilled` or `Unknown` once exited.
    pub reason: String,
    pub message: String,
    /// Image id (`sha256:<hex>`).
    pub image_id: String,
    /// Digest reference of the image (`repo@sha256:<hex>`), or the id when it has none.
    pub image_ref: String,
    /// Signal StopContainer sends first.
    pub stop_signal: i32,
    /// OCI bundle (holds `config.json`; its `rootfs` is the image service's overlay).
    pub bundle: PathBuf,
    /// The monitor's state dir for this container.
    pub state_dir: PathBuf,
    /// Absolute CRI log path, when the pod has a log directory.
    pub log_path: Option<PathBuf>,
    /// Host pid of the init, 0 before create finished.
    pub pid: i32,
    /// Uid, gid and groups the process was started with (from the OCI spec).
    #[serde(default)]
    pub user: Option<ProcessUser>,
}

/// The identity a container's process started with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessUser {
    pub uid: i64,
    pub gid: i64,
    pub groups: Vec<i64>,
}

/// The CRI enum value of signal number `sig` (`RUNTIME_DEFAULT` if it has none).
pub fn signal_to_cri(sig: i32) -> v1::Signal {
    nix::sys::signal::Signal::try_from(sig)
        .ok()
        .and_then(|s| v1::Signal::from_str_name(s.as_str()))
        .unwrap_or(v1::Signal::RuntimeDefault)
}

impl ContainerRecord {
    /// kubelet's unique container name: `name_podname_podnamespace_poduid_attempt`.
    pub fn reservation_name(c: &v1::ContainerMetadata, pod: &v1::PodSandboxMetadata) -> String {
        format!(
            "{}_{}_{}_{}_{}",
            c.name, pod.name, pod.namespace, pod.uid, c.attempt
        )
    }

    /// Records how the init ended, with the reason kubelet shows.
    pub fn set_exited(&mut self, code: i32, finished_at: i64, oom_killed: bool) {
        self.state = ContainerState::Exited;
        self.exit_code = code;
        self.finished_at = finished_at;
        self.reason = if oom_killed {
            "OOMKilled"
        } else if code == 0 {
            "Completed"
        } else {
            "Error"
        }
        .into();
    }

    /// Marks the container exited with an exit nobody recorded.
    pub fn set_exit_unknown(&mut self, message: &str) {
        self.state = ContainerState::Exited;
        self.exit_code = 255;
        self.finished_at = super::now_nanos();
        self.reason = "Unknown".into();
        self.message = message.into();
    }

    pub fn metadata(&self) -> v1::ContainerMetadata {
        self.config.metadata.clone().unwrap_or_default()
    }

    pub fn image_spec(&self) -> v1::ImageSpec {
        self.config.image.clone().unwrap_or_default()
    }

    /// The image a status reports: the name the pod spec gave
    /// (`user_specified_image`, which the kubelet shows as the container's
    /// image) when the kubelet sent one, else what CreateContainer named.
    pub fn status_image_spec(&self) -> v1::ImageSpec {
        let mut spec = self.image_spec();
        if !spec.user_specified_image.is_empty() {
            spec.image = spec.user_specified_image.clone();
        }
        spec
    }

    /// The short form used by ListContainers (see [`super::Listed`]).
    pub fn to_cri(&self) -> v1::Container {
        v1::Container {
            id: self.id.clone(),
            pod_sandbox_id: self.pod_id.clone(),
            metadata: Some(self.metadata()),
            image: Some(self.image_spec()),
            // The CRI: "for most runtimes, this should be an image ID"; the
            // kubelet's image GC matches it against ListImages' ids.
            image_ref: if self.image_id.is_empty() {
                self.image_ref.clone()
            } else {
                self.image_id.clone()
            },
            state: self.state.to_cri() as i32,
            created_at: self.created_at,
            labels: self.config.labels.clone(),
            annotations: self.config.annotations.clone(),
            image_id: self.image_id.clone(),
        }
    }

    /// The full status.
    pub fn to_status(&self) -> v1::ContainerStatus {
        v1::ContainerStatus {
            id: self.id.clone(),
            metadata: Some(self.metadata()),
            state: self.state.to_cri() as i32,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            exit_code: self.exit_code,
            image: Some(self.status_image_spec()),
            image_ref: self.image_ref.clone(),
            reason: self.reason.clone(),
            message: self.message.clone(),
            labels: self.config.labels.clone(),
            annotations: self.config.annotations.clone(),
            mounts: self.config.mounts.clone(),
            log_path: self
                .log_path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            resources: self.config.linux.as_ref().map(|l| v1::ContainerResources {
                linux: l.resources.clone(),
                windows: None,
            }),
            image_id: self.image_id.clone(),
            user: self.user.as_ref().map(|u| v1::ContainerUser {
                linux: Some(v1::LinuxContainerUser {
                    uid: u.uid,
                    gid: u.gid,
                    supplemental_groups: u.groups.clone(),
                }),
            }),
            stop_signal: signal_to_cri(self.stop_signal) as i32,
        }
    }
}

impl super::Listed for ContainerRecord {
    type Item = super::Listing<v1::Container>;
    fn listed(&self) -> Option<super::Listing<v1::Container>> {
        (self.state != ContainerState::Creating).then(|| super::Listing::new(self.to_cri()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_follow_the_diagram() {
        use ContainerState::*;
        assert!(Created.can_start());
        for s in [Creating, Running, Exited, Unknown] {
            assert!(!s.can_start(), "{s:?}");
        }
        assert!(Created.can_stop() && Running.can_stop());
        assert!(!Exited.can_stop() && !Unknown.can_stop() && !Creating.can_stop());
        for s in [Created, Running, Exited, Unknown] {
            assert!(s.can_remove(), "{s:?}");
        }
        assert!(!Creating.can_remove());
        assert_eq!(Creating.to_cri(), v1::ContainerState::ContainerCreated);
        assert_eq!(Exited.to_cri(), v1::ContainerState::ContainerExited);
    }

    #[test]
    fn exit_reasons_match_what_kubelet_shows() {
        let mut r = sample();
        r.set_exited(0, 9, false);
        assert_eq!(
            (r.state, r.reason.as_str(), r.exit_code),
            (ContainerState::Exited, "Completed", 0)
        );
        r.set_exited(3, 9, false);
        assert_eq!(r.reason, "Error");
        r.set_exited(137, 9, true);
        assert_eq!(r.reason, "OOMKilled");
        assert_eq!(r.to_status().exit_code, 137);
        assert_eq!(r.to_status().finished_at, 9);
    }

    #[test]
    fn status_reports_the_resolved_stop_signal_and_user() {
        let mut r = sample();
        r.stop_signal = 3;
        let st = r.to_status();
        assert_eq!(st.stop_signal, v1::Signal::Sigquit as i32);
        assert_eq!(
            st.user.unwrap().linux.unwrap().supplemental_groups,
            vec![1000, 10]
        );
        assert_eq!(signal_to_cri(9), v1::Signal::Sigkill);
        assert_eq!(signal_to_cri(0), v1::Signal::RuntimeDefault);
    }

    #[test]
    fn records_written_before_the_user_field_still_load() {
        let mut v = serde_json::to_value(sample()).unwrap();
        v.as_object_mut().unwrap().remove("user");
        let r: ContainerRecord = serde_json::from_value(v).unwrap();
        assert_eq!(r.user, None);
    }

    #[test]
    fn container_names_are_built_like_kubelet_does() {
        let c = v1::ContainerMetadata {
            name: "app".into(),
            attempt: 1,
        };
        let p = v1::PodSandboxMetadata {
            name: "web".into(),
            uid: "u1".into(),
            namespace: "ns".into(),
            attempt: 0,
        };
        assert_eq!(ContainerRecord::reservation_name(&c, &p), "app_web_ns_u1_1");
    }

    #[test]
    fn record_round_trips_through_json() {
        let r = sample();
        let back: ContainerRecord =
            serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }

    fn sample() -> ContainerRecord {
        ContainerRecord {
            version: crate::state::RECORD_VERSION,
            id: "c".repeat(64),
            pod_id: "p".repeat(64),
            name: "app_web_ns_u1_0".into(),
            config: ContainerConfig {
                metadata: Some(v1::ContainerMetadata {
                    name: "app".into(),
                    attempt: 0,
                }),
                command: vec!["sleep".into(), "9".into()],
                ..Default::default()
            },
            state: ContainerState::Created,
            created_at: 1,
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            image_id: "sha256:00".into(),
            image_ref: "x@sha256:00".into(),
            stop_signal: 15,
            bundle: "/b".into(),
            state_dir: "/s".into(),
            log_path: Some("/l/app/0.log".into()),
            pid: 0,
            user: Some(ProcessUser {
                uid: 1000,
                gid: 1000,
                groups: vec![1000, 10],
            }),
        }
    }
}

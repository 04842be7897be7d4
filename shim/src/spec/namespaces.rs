//! Which namespaces a container creates or joins, its hostname, and the pod
//! sysctls that apply inside those namespaces.

use std::collections::HashMap;
use std::path::PathBuf;

use berth_proto::v1::{ContainerConfig, NamespaceMode, NamespaceOption, PodSandboxConfig};
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType};

use super::PodNamespaces;
use crate::error::{Error, Result};

/// The namespace modes that apply to one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Modes {
    /// Network (and with it UTS).
    pub network: NamespaceMode,
    /// PID.
    pub pid: NamespaceMode,
    /// IPC.
    pub ipc: NamespaceMode,
    /// Container id for `pid == TARGET`.
    pub target_id: String,
}

fn mode(v: i32, field: &str) -> Result<NamespaceMode> {
    NamespaceMode::try_from(v)
        .map_err(|_| Error::InvalidArgument(format!("{field}: unknown namespace mode {v}")))
}

impl Modes {
    /// The container's namespace options, falling back to the pod's when the
    /// container carries none (kubelet always copies them, crictl may not).
    pub fn of(config: &ContainerConfig, sandbox: &PodSandboxConfig) -> Result<Self> {
        let container = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref());
        let pod = sandbox
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref());
        let (opts, field): (NamespaceOption, &str) = match (container, pod) {
            (Some(c), _) => (c.clone(), "linux.security_context.namespace_options"),
            (None, Some(p)) => (
                p.clone(),
                "sandbox linux.security_context.namespace_options",
            ),
            (None, None) => (NamespaceOption::default(), "namespace_options"),
        };
        if let Some(u) = &opts.userns_options {
            // The pod's user namespace is the pod sandbox's (spec::userns);
            // a container may only say POD or NODE, as the pod does.
            let m = mode(u.mode, &format!("{field}.userns_options.mode"))?;
            if !matches!(m, NamespaceMode::Node | NamespaceMode::Pod) {
                return Err(Error::InvalidArgument(format!(
                    "{field}.userns_options.mode: a user namespace is POD or NODE, not {}",
                    m.as_str_name()
                )));
            }
        }
        Ok(Modes {
            network: mode(opts.network, &format!("{field}.network"))?,
            pid: mode(opts.pid, &format!("{field}.pid"))?,
            ipc: mode(opts.ipc, &format!("{field}.ipc"))?,
            target_id: opts.target_id,
        })
    }

    /// Whether the container uses the host's network (and UTS) namespace.
    pub fn host_network(&self) -> bool {
        self.network == NamespaceMode::Node
    }

    /// Whether the container uses the host's IPC namespace.
    pub fn host_ipc(&self) -> bool {
        self.ipc == NamespaceMode::Node
    }
}

/// The pod's hostname; for host-network pods without one, the node's.
pub fn hostname(sandbox: &PodSandboxConfig, host_network: bool) -> String {
    if sandbox.hostname.is_empty() && host_network {
        return std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
    }
    sandbox.hostname.clone()
}

fn ns(typ: LinuxNamespaceType, path: Option<PathBuf>) -> Result<LinuxNamespace> {
    let b = LinuxNamespaceBuilder::default().typ(typ);
    let b = match path {
        Some(p) => b.path(p),
        None => b,
    };
    b.build()
        .map_err(|e| Error::Internal(format!("build oci namespace: {e}")))
}

/// The pod's pin for a namespace the container shares; `mode` is the
/// namespace_options field that asked for sharing.
fn pinned(path: &Option<PathBuf>, mode: &str, what: &str) -> Result<PathBuf> {
    path.clone().ok_or_else(|| {
        Error::FailedPrecondition(format!(
            "linux.security_context.namespace_options.{mode}: POD mode, but the pod sandbox has no pinned {what} namespace"
        ))
    })
}

/// `linux.namespaces`: a new mount namespace always; net/uts/ipc joined from
/// the pod unless they are the host's; pid by mode; a new cgroup namespace
/// unless privileged.
pub fn namespaces(
    modes: &Modes,
    pod: &PodNamespaces,
    target_pid: Option<i32>,
    privileged: bool,
) -> Result<Vec<LinuxNamespace>> {
    let mut out = vec![ns(LinuxNamespaceType::Mount, None)?];
    if let Some(user) = &pod.user {
        out.push(ns(LinuxNamespaceType::User, Some(user.clone()))?);
    }
    if !modes.host_network() {
        out.push(ns(
            LinuxNamespaceType::Network,
            Some(pinned(&pod.net, "network", "network")?),
        )?);
        out.push(ns(
            LinuxNamespaceType::Uts,
            Some(pinned(&pod.uts, "network", "uts")?),
        )?);
    }
    if !modes.host_ipc() {
        out.push(ns(
            LinuxNamespaceType::Ipc,
            Some(pinned(&pod.ipc, "ipc", "ipc")?),
        )?);
    }
    match modes.pid {
        NamespaceMode::Node => {}
        NamespaceMode::Pod => {
            out.push(ns(
                LinuxNamespaceType::Pid,
                Some(pinned(&pod.pid, "pid", "pid")?),
            )?);
        }
        NamespaceMode::Container => out.push(ns(LinuxNamespaceType::Pid, None)?),
        NamespaceMode::Target => {
            let pid = target_pid.filter(|p| *p > 0).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "linux.security_context.namespace_options.target_id: target container {:?} has no running process",
                    modes.target_id
                ))
            })?;
            out.push(ns(
                LinuxNamespaceType::Pid,
                Some(PathBuf::from(format!("/proc/{pid}/ns/pid"))),
            )?);
        }
    }
    if !privileged {
        out.push(ns(LinuxNamespaceType::Cgroup, None)?);
    }
    Ok(out)
}

/// The namespace a sysctl lives in, or `None` for node-wide ones.
fn sysctl_namespace(key: &str) -> Option<LinuxNamespaceType> {
    const IPC_KEYS: [&str; 7] = [
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
        "kernel.msgmax",
        "kernel.msgmnb",
    ];
    if IPC_KEYS.contains(&key) || key == "kernel.msgmni" || key.starts_with("fs.mqueue.") {
        Some(LinuxNamespaceType::Ipc)
    } else if key.starts_with("net.") {
        Some(LinuxNamespaceType::Network)
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        Some(LinuxNamespaceType::Uts)
    } else {
        None
    }
}

/// kubelet accepts `net/ipv4/ip_forward` as well as `net.ipv4.ip_forward`;
/// in the slash form dots are part of a component (e.g. an interface name).
fn normalise_sysctl(key: &str) -> String {
    if !key.contains('/') {
        return key.to_string();
    }
    key.chars()
        .map(|c| match c {
            '/' => '.',
            '.' => '/',
            c => c,
        })
        .collect()
}

/// The pod's sysctls, each checked to be namespaced and to live in a namespace
/// the container does not share with the host.
pub fn sysctls(sandbox: &PodSandboxConfig, modes: &Modes) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    let Some(linux) = &sandbox.linux else {
        return Ok(out);
    };
    for (key, value) in &linux.sysctls {
        let k = normalise_sysctl(key);
        let host = match sysctl_namespace(&k) {
            None => {
                return Err(Error::InvalidArgument(format!(
                    "linux.sysctls[{key:?}]: not a namespaced sysctl"
                )))
            }
            Some(LinuxNamespaceType::Network | LinuxNamespaceType::Uts) => modes.host_network(),
            Some(_) => modes.host_ipc(),
        };
        if host {
            return Err(Error::InvalidArgument(format!(
                "linux.sysctls[{key:?}]: the pod shares this namespace with the host"
            )));
        }
        out.insert(k, value.clone());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{
        LinuxContainerConfig, LinuxContainerSecurityContext, LinuxPodSandboxConfig, UserNamespace,
    };

    fn pod() -> PodNamespaces {
        PodNamespaces {
            net: Some("/run/berth/ns/p/net".into()),
            ipc: Some("/run/berth/ns/p/ipc".into()),
            uts: Some("/run/berth/ns/p/uts".into()),
            pid: Some("/run/berth/ns/p/pid".into()),
            user: None,
        }
    }

    fn modes(network: NamespaceMode, pid: NamespaceMode, ipc: NamespaceMode) -> Modes {
        Modes {
            network,
            pid,
            ipc,
            target_id: "t".into(),
        }
    }

    fn render(v: &[LinuxNamespace]) -> Vec<(LinuxNamespaceType, Option<String>)> {
        v.iter()
            .map(|n| (n.typ(), n.path().as_ref().map(|p| p.display().to_string())))
            .collect()
    }

    #[test]
    fn pid_modes() {
        use LinuxNamespaceType as T;
        use NamespaceMode as M;
        let cases: &[(M, Option<&str>)] = &[
            (M::Node, None),
            (M::Pod, Some("/run/berth/ns/p/pid")),
            (M::Container, Some("")),
            (M::Target, Some("/proc/4242/ns/pid")),
        ];
        for (pid_mode, want) in cases {
            let got =
                namespaces(&modes(M::Pod, *pid_mode, M::Pod), &pod(), Some(4242), false).unwrap();
            let got = render(&got);
            let pid: Vec<_> = got.iter().filter(|(t, _)| *t == T::Pid).collect();
            match want {
                None => assert!(pid.is_empty(), "{pid_mode:?}: {got:?}"),
                Some("") => assert_eq!(pid, vec![&(T::Pid, None)], "{pid_mode:?}"),
                Some(p) => assert_eq!(pid, vec![&(T::Pid, Some(p.to_string()))], "{pid_mode:?}"),
            }
            assert_eq!(got[0], (T::Mount, None));
            assert!(got.contains(&(T::Network, Some("/run/berth/ns/p/net".into()))));
            assert!(got.contains(&(T::Uts, Some("/run/berth/ns/p/uts".into()))));
            assert!(got.contains(&(T::Ipc, Some("/run/berth/ns/p/ipc".into()))));
            assert!(got.contains(&(T::Cgroup, None)));
        }
        let err = namespaces(&modes(M::Pod, M::Target, M::Pod), &pod(), None, false).unwrap_err();
        assert!(err.to_string().contains("target_id"), "{err}");
        let no_pid = PodNamespaces { pid: None, ..pod() };
        let err = namespaces(&modes(M::Pod, M::Pod, M::Pod), &no_pid, None, false).unwrap_err();
        assert!(matches!(err, Error::FailedPrecondition(_)), "{err}");
        assert!(err.to_string().contains("namespace_options.pid"), "{err}");
    }

    #[test]
    fn host_namespaces_and_privileged() {
        use LinuxNamespaceType as T;
        use NamespaceMode as M;
        let host = PodNamespaces {
            net: None,
            ipc: None,
            uts: None,
            pid: None,
            user: None,
        };
        let got = namespaces(&modes(M::Node, M::Node, M::Node), &host, None, true).unwrap();
        assert_eq!(render(&got), vec![(T::Mount, None)]);
        // A pod-network pod whose pin is missing is an error, not a host namespace.
        let err = namespaces(&modes(M::Pod, M::Node, M::Node), &host, None, false).unwrap_err();
        assert!(err.to_string().contains("network"), "{err}");
    }

    #[test]
    fn modes_come_from_the_container_then_the_pod() {
        let sandbox = PodSandboxConfig {
            linux: Some(LinuxPodSandboxConfig {
                security_context: Some(berth_proto::v1::LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: NamespaceMode::Node as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let m = Modes::of(&ContainerConfig::default(), &sandbox).unwrap();
        assert!(m.host_network());
        let config = ContainerConfig {
            linux: Some(LinuxContainerConfig {
                security_context: Some(LinuxContainerSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        pid: NamespaceMode::Container as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let m = Modes::of(&config, &sandbox).unwrap();
        assert!(!m.host_network());
        assert_eq!(m.pid, NamespaceMode::Container);

        let with_opts = |f: &dyn Fn(&mut NamespaceOption)| {
            let mut c = config.clone();
            let opts = c
                .linux
                .as_mut()
                .and_then(|l| l.security_context.as_mut())
                .and_then(|s| s.namespace_options.as_mut())
                .unwrap();
            f(opts);
            c
        };
        let userns = with_opts(&|o| {
            o.userns_options = Some(UserNamespace {
                mode: NamespaceMode::Pod as i32,
                ..Default::default()
            })
        });
        // POD: the pod sandbox's user namespace (checked at RunPodSandbox).
        Modes::of(&userns, &sandbox).unwrap();
        let target = with_opts(&|o| {
            o.userns_options = Some(UserNamespace {
                mode: NamespaceMode::Target as i32,
                ..Default::default()
            })
        });
        let err = Modes::of(&target, &sandbox).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        assert!(err.to_string().contains("userns_options.mode"), "{err}");
        let host_userns = with_opts(&|o| {
            o.userns_options = Some(UserNamespace {
                mode: NamespaceMode::Node as i32,
                ..Default::default()
            })
        });
        Modes::of(&host_userns, &sandbox).unwrap();
        let bad = with_opts(&|o| o.network = 42);
        assert!(Modes::of(&bad, &sandbox)
            .unwrap_err()
            .to_string()
            .contains("network"));
    }

    #[test]
    fn sysctls_must_be_namespaced_and_not_host() {
        use NamespaceMode as M;
        let mut sandbox = PodSandboxConfig::default();
        let set = |sandbox: &mut PodSandboxConfig, kv: &[(&str, &str)]| {
            sandbox.linux = Some(LinuxPodSandboxConfig {
                sysctls: kv
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            });
        };
        set(
            &mut sandbox,
            &[
                ("net.ipv4.ip_forward", "1"),
                ("kernel.shmmax", "9"),
                ("net/ipv4/conf/eth0.1/forwarding", "1"),
            ],
        );
        let got = sysctls(&sandbox, &modes(M::Pod, M::Pod, M::Pod)).unwrap();
        assert_eq!(
            got.get("net.ipv4.ip_forward").map(String::as_str),
            Some("1")
        );
        assert_eq!(got.get("kernel.shmmax").map(String::as_str), Some("9"));
        assert_eq!(
            got.get("net.ipv4.conf.eth0/1.forwarding")
                .map(String::as_str),
            Some("1")
        );
        let err = sysctls(&sandbox, &modes(M::Node, M::Pod, M::Pod)).unwrap_err();
        assert!(err.to_string().contains("host"), "{err}");
        set(&mut sandbox, &[("vm.swappiness", "1")]);
        let err = sysctls(&sandbox, &modes(M::Pod, M::Pod, M::Pod)).unwrap_err();
        assert!(err.to_string().contains("vm.swappiness"), "{err}");
    }
}

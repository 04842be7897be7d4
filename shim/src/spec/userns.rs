//! CRI user namespaces (`namespace_options.userns_options`, `hostUsers:
//! false` in a pod spec) and id-mapped volume mounts (`Mount.uid_mappings`).
//!
//! Mode POD: the pod gets one user namespace with exactly the kubelet's maps,
//! made by `berth-monitor pin-ns` together with the pod's net/IPC/UTS
//! namespaces, which it owns (see `berth_runtime::pin`). Every container of
//! the pod joins it; the image layers under its rootfs overlay are id-mapped
//! through it (`berth_runtime::idmap`), so image files owned by 0 show as the
//! pod's root without copying or chowning a layer. Mode NODE (or no options) is the
//! host's user namespace, as before. CONTAINER and TARGET do not exist for
//! user namespaces (the CRI field allows POD and NODE only; containerd refuses
//! the others as invalid).
//!
//! A mount with `uid_mappings`/`gid_mappings` becomes an id-mapped bind of the
//! host path with those maps: with the pod's maps (what a kubelet sends) a
//! host file owned by 0 shows as the container's root, and what that root
//! writes lands on the host owned by 0. A mount without maps in such a pod is
//! a plain bind: the container's root writes files owned by its host id, and
//! host-owned files show as the overflow id (`nobody`).

use std::path::Path;

use berth_proto::v1::{IdMapping, Mount as CriMount, NamespaceMode, PodSandboxConfig};
use berth_runtime::container::userns::idmap_option_value;
use berth_runtime::idmap::{check_maps, IdMap};

use crate::error::{Error, Result};

/// The uid and gid maps of a pod with its own user namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodMaps {
    pub uids: Vec<IdMap>,
    pub gids: Vec<IdMap>,
}

fn to_maps(m: &[IdMapping]) -> Vec<IdMap> {
    m.iter()
        .map(|m| IdMap {
            container_id: m.container_id,
            host_id: m.host_id,
            length: m.length,
        })
        .collect()
}

const FIELD: &str = "config.linux.security_context.namespace_options";

/// The pod's user namespace maps for mode POD, `None` for NODE or no
/// options; refuses other modes and unusable maps, naming the field.
pub fn pod_maps(config: &PodSandboxConfig) -> Result<Option<PodMaps>> {
    let Some(ns) = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref())
    else {
        return Ok(None);
    };
    let Some(u) = &ns.userns_options else {
        return Ok(None);
    };
    match NamespaceMode::try_from(u.mode) {
        Ok(NamespaceMode::Node) => return Ok(None),
        Ok(NamespaceMode::Pod) => {}
        Ok(m) => {
            return Err(Error::InvalidArgument(format!(
                "{FIELD}.userns_options.mode: a user namespace is POD or NODE, not {}",
                m.as_str_name()
            )))
        }
        Err(_) => {
            return Err(Error::InvalidArgument(format!(
                "{FIELD}.userns_options.mode: unknown mode {}",
                u.mode
            )))
        }
    }
    let maps = PodMaps {
        uids: to_maps(&u.uids),
        gids: to_maps(&u.gids),
    };
    for (name, m) in [("uids", &maps.uids), ("gids", &maps.gids)] {
        if let Some(why) = check_maps(m) {
            return Err(Error::InvalidArgument(format!(
                "{FIELD}.userns_options.{name}: {why}"
            )));
        }
    }
    // The pod's root must exist in it: it owns the pod's files.
    for (name, m) in [("uids", &maps.uids), ("gids", &maps.gids)] {
        if berth_runtime::idmap::to_host(m, 0).is_none() {
            return Err(Error::InvalidArgument(format!(
                "{FIELD}.userns_options.{name}: id 0 is not mapped"
            )));
        }
    }
    // The namespaces it owns must be the pod's own (a kubelet refuses
    // hostUsers: false with hostNetwork/hostIPC/hostPID the same way).
    for (name, v) in [("network", ns.network), ("ipc", ns.ipc), ("pid", ns.pid)] {
        if v == NamespaceMode::Node as i32 {
            return Err(Error::InvalidArgument(format!(
                "{FIELD}.{name}: NODE cannot be combined with a pod user namespace (userns_options POD)"
            )));
        }
    }
    Ok(Some(maps))
}

/// The `idmap=` option a CRI mount with maps becomes, or `None`; refuses
/// unusable maps naming `mounts[i]`.
pub fn mount_option(i: usize, m: &CriMount) -> Result<Option<String>> {
    if m.uid_mappings.is_empty() && m.gid_mappings.is_empty() {
        return Ok(None);
    }
    let (uids, gids) = (to_maps(&m.uid_mappings), to_maps(&m.gid_mappings));
    for (name, maps) in [("uid_mappings", &uids), ("gid_mappings", &gids)] {
        if let Some(why) = check_maps(maps) {
            return Err(Error::InvalidArgument(format!("mounts[{i}].{name}: {why}")));
        }
    }
    Ok(Some(idmap_option_value(&uids, &gids)))
}

/// Checks, before anything is created, that every mount with maps can be
/// id-mapped (the filesystem supports it): the same kernel calls as the real
/// mount, with the pod's user namespace, on a copy that is dropped.
pub fn probe_mounts(mounts: &[CriMount], userns: Option<&Path>) -> Result<()> {
    let Some(userns) = userns else { return Ok(()) };
    for (i, m) in mounts.iter().enumerate() {
        if m.uid_mappings.is_empty() && m.gid_mappings.is_empty() {
            continue;
        }
        if let Err(e) = berth_runtime::idmap::probe(Path::new(&m.host_path), userns) {
            let why = if e.raw_os_error() == Some(libc::EINVAL) {
                "its filesystem cannot be id-mapped"
            } else {
                "it cannot be id-mapped"
            };
            return Err(Error::FailedPrecondition(format!(
                "mounts[{i}].container_path {:?}: host path {:?} has uid/gid mappings but {why} ({e})",
                m.container_path, m.host_path
            )));
        }
    }
    Ok(())
}

/// The host uid and gid of the pod's root, owner of a container's writable
/// layer in a pod with its own user namespace.
pub fn root_ids(maps: &PodMaps) -> (u32, u32) {
    let host = |m: &[IdMap]| berth_runtime::idmap::to_host(m, 0).unwrap_or(0);
    (host(&maps.uids), host(&maps.gids))
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{
        LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceOption, UserNamespace,
    };

    fn idm(c: u32, h: u32, l: u32) -> IdMapping {
        IdMapping {
            container_id: c,
            host_id: h,
            length: l,
        }
    }

    fn pod(mode: NamespaceMode, uids: Vec<IdMapping>, gids: Vec<IdMapping>) -> PodSandboxConfig {
        PodSandboxConfig {
            linux: Some(LinuxPodSandboxConfig {
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        userns_options: Some(UserNamespace {
                            mode: mode as i32,
                            uids,
                            gids,
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn err(c: &PodSandboxConfig) -> Error {
        pod_maps(c).unwrap_err()
    }

    #[test]
    fn pod_mode_needs_valid_maps_and_node_mode_is_the_host() {
        let ok = vec![idm(0, 65536, 65536)];
        let got = pod_maps(&pod(NamespaceMode::Pod, ok.clone(), ok.clone()))
            .unwrap()
            .unwrap();
        assert_eq!(got.uids[0].host_id, 65536);
        assert_eq!(
            pod_maps(&pod(NamespaceMode::Node, vec![], vec![])).unwrap(),
            None
        );
        assert_eq!(pod_maps(&PodSandboxConfig::default()).unwrap(), None);
        let cases = [
            (
                pod(NamespaceMode::Pod, vec![], ok.clone()),
                "userns_options.uids: no mappings",
            ),
            (
                pod(NamespaceMode::Pod, ok.clone(), vec![]),
                "userns_options.gids: no mappings",
            ),
            (
                pod(NamespaceMode::Pod, vec![idm(0, 65536, 0)], ok.clone()),
                "userns_options.uids: [0]: length is 0",
            ),
            (
                pod(NamespaceMode::Pod, ok.clone(), vec![idm(0, u32::MAX, 2)]),
                "userns_options.gids: [0]: range",
            ),
            (
                pod(
                    NamespaceMode::Pod,
                    vec![idm(0, 65536, 100), idm(10, 200000, 5)],
                    ok.clone(),
                ),
                "overlap",
            ),
            (
                pod(NamespaceMode::Pod, vec![idm(1, 65536, 10)], ok.clone()),
                "id 0 is not mapped",
            ),
            (
                pod(NamespaceMode::Target, ok.clone(), ok.clone()),
                "userns_options.mode",
            ),
            (
                pod(NamespaceMode::Container, ok.clone(), ok.clone()),
                "userns_options.mode",
            ),
        ];
        for (c, want) in cases {
            let e = err(&c);
            assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
            assert!(e.to_string().contains(want), "{want}: {e}");
        }
        let mut host_net = pod(NamespaceMode::Pod, ok.clone(), ok);
        let ns = host_net
            .linux
            .as_mut()
            .unwrap()
            .security_context
            .as_mut()
            .unwrap();
        ns.namespace_options.as_mut().unwrap().network = NamespaceMode::Node as i32;
        assert!(err(&host_net)
            .to_string()
            .contains("namespace_options.network"));
    }

    #[test]
    fn mount_maps_become_the_idmap_option() {
        let m = CriMount {
            container_path: "/v".into(),
            host_path: "/tmp".into(),
            uid_mappings: vec![idm(0, 65536, 65536)],
            gid_mappings: vec![idm(0, 131072, 1)],
            ..Default::default()
        };
        assert_eq!(
            mount_option(3, &m).unwrap().as_deref(),
            Some("idmap=uids=0-65536-65536;gids=0-131072-1")
        );
        let bad = CriMount {
            gid_mappings: vec![],
            ..m.clone()
        };
        assert!(mount_option(3, &bad)
            .unwrap_err()
            .to_string()
            .contains("mounts[3].gid_mappings: no mappings"));
        assert_eq!(mount_option(0, &CriMount::default()).unwrap(), None);
    }
}

//! CRI CreateContainer request → OCI runtime spec.
//!
//! Pure translation with kubelet's semantics and containerd's defaults: the only
//! things read from the host are the image rootfs' `/etc/passwd` and
//! `/etc/group`, the files a request names (host paths of mounts and devices, a
//! Localhost seccomp profile), `/proc/self/oom_score_adj` for the clamp, and
//! whether AppArmor/SELinux are enabled. Nothing is created or mounted here; the
//! spec is handed to `berth-runtime` which does that.
//!
//! Layout: [`process`] (args, env, cwd, user, stop signal), [`mounts`] (default
//! mounts, pod files, CRI mounts and devices), [`namespaces`], [`resources`]
//! (cgroup limits, oom_score_adj), [`security`] (capabilities, masked paths,
//! seccomp/AppArmor selection), [`seccomp`] (the RuntimeDefault profile).

pub mod image_volume;
pub mod mounts;
pub mod namespaces;
pub mod process;
pub mod resources;
pub mod seccomp;
pub mod security;
pub mod userns;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use berth_proto::v1::{ContainerConfig, LinuxContainerSecurityContext, PodSandboxConfig};
use oci_spec::runtime::{Linux, LinuxResourcesBuilder, Process, RootBuilder, Spec};

use crate::error::{Error, Result};

pub use crate::image::store::ImageConfig;
pub use process::{resolve_user, stop_signal};
pub use resources::host_has_hugetlb;
pub use seccomp::runtime_default_seccomp;
pub use security::default_capabilities;

/// The OCI version the generated specs claim.
pub const OCI_VERSION: &str = "1.0.2";

/// The pod's pinned namespace files. `None` for net/ipc/uts means the pod uses
/// the host's namespace (host network / host IPC); `pid` is only consulted when
/// the container asks to share the pod's PID namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodNamespaces {
    /// Network namespace pin.
    pub net: Option<PathBuf>,
    /// IPC namespace pin.
    pub ipc: Option<PathBuf>,
    /// UTS namespace pin.
    pub uts: Option<PathBuf>,
    /// PID namespace of the pod's init (shared PID namespace pods only).
    pub pid: Option<PathBuf>,
    /// The pod's user namespace (userns_options mode POD only).
    pub user: Option<PathBuf>,
}

/// Host paths of the per-pod files bind-mounted into every container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodFiles {
    /// Becomes `/etc/hostname`.
    pub hostname: Option<PathBuf>,
    /// Becomes `/etc/hosts`.
    pub hosts: Option<PathBuf>,
    /// Becomes `/etc/resolv.conf`.
    pub resolv_conf: Option<PathBuf>,
    /// The pod's shared `/dev/shm` directory; `None` gives each container a
    /// private 64 MiB tmpfs.
    pub shm: Option<PathBuf>,
}

/// Everything [`container_spec`] needs.
#[derive(Debug, Clone, Copy)]
pub struct SpecInput<'a> {
    /// The new container's id.
    pub container_id: &'a str,
    /// The id of the pod sandbox it belongs to (for annotations).
    pub sandbox_id: &'a str,
    /// The CRI container config.
    pub config: &'a ContainerConfig,
    /// The config its pod was created with.
    pub sandbox: &'a PodSandboxConfig,
    /// The image's runtime config.
    pub image: &'a ImageConfig,
    /// The mounted overlay (`root.path`).
    pub rootfs: &'a Path,
    /// The pod's pinned namespaces.
    pub pod_namespaces: &'a PodNamespaces,
    /// For `NamespaceMode::TARGET`: the target container's init pid.
    pub target_pid: Option<i32>,
    /// The cgroup parent (`linux.cgroup_parent` of the pod, or the default).
    pub cgroup_parent: &'a str,
    /// The pod's hostname, hosts, resolv.conf and shm.
    pub pod_files: &'a PodFiles,
    /// Clamp `oom_score_adj` up to berthd's own instead of failing.
    pub restrict_oom_score_adj: bool,
    /// Leave hugepage limits out of the spec (the host has no hugetlb
    /// controller the runtime can use and the config tolerates that); they
    /// are still validated.
    pub drop_hugepage_limits: bool,
}

/// Annotation keys containerd sets on every CRI container.
pub mod annotations {
    /// `container` or `sandbox`.
    pub const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
    /// The pod sandbox id.
    pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
    /// The pod's name.
    pub const SANDBOX_NAME: &str = "io.kubernetes.cri.sandbox-name";
    /// The pod's namespace.
    pub const SANDBOX_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
    /// The pod's uid.
    pub const SANDBOX_UID: &str = "io.kubernetes.cri.sandbox-uid";
    /// The container's name.
    pub const CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";
    /// The image as the request named it.
    pub const IMAGE_NAME: &str = "io.kubernetes.cri.image-name";
}

fn build_err(what: &str) -> impl FnOnce(oci_spec::OciSpecError) -> Error + '_ {
    move |e| Error::Internal(format!("build oci {what}: {e}"))
}

/// The container's security context, or the empty one.
pub(crate) fn security_context(config: &ContainerConfig) -> LinuxContainerSecurityContext {
    config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.clone())
        .unwrap_or_default()
}

/// Translates a CreateContainer request into the OCI runtime spec.
fn oci_maps(
    maps: &[berth_runtime::idmap::IdMap],
) -> Result<Vec<oci_spec::runtime::LinuxIdMapping>> {
    maps.iter()
        .map(|m| {
            oci_spec::runtime::LinuxIdMappingBuilder::default()
                .container_id(m.container_id)
                .host_id(m.host_id)
                .size(m.length)
                .build()
                .map_err(build_err("linux.uidMappings"))
        })
        .collect()
}

pub fn container_spec(input: &SpecInput) -> Result<Spec> {
    if input.container_id.is_empty() || input.container_id.contains(['/', '\0']) {
        // Ids are ours, not the client's: a bad one is a bug upstream.
        return Err(Error::Internal(format!(
            "container id {:?} cannot name a cgroup",
            input.container_id
        )));
    }
    let config = input.config;
    let sc = security_context(config);
    let sandbox_privileged = input
        .sandbox
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .is_some_and(|s| s.privileged);
    if sc.privileged && !sandbox_privileged {
        return Err(Error::InvalidArgument(
            "linux.security_context.privileged: no privileged container allowed in a non-privileged sandbox"
                .into(),
        ));
    }
    let privileged = sc.privileged;
    let modes = namespaces::Modes::of(config, input.sandbox)?;

    let hostname = namespaces::hostname(input.sandbox, modes.host_network());

    // Process.
    let mut process = Process::default();
    process.set_terminal(Some(config.tty));
    process.set_console_size(None);
    process.set_args(Some(process::args(input.image, config)?));
    process.set_env(Some(process::env(input.image, config, &hostname)?));
    process.set_cwd(process::cwd(input.image, config)?);
    process.set_user(process::user(input.rootfs, input.image, &sc)?);
    process.set_rlimits(None);
    process.set_no_new_privileges(Some(sc.no_new_privs && !privileged));
    process.set_capabilities(Some(security::capabilities(&sc)?));
    process.set_apparmor_profile(security::apparmor_profile(&sc, privileged)?);
    process.set_selinux_label(None);
    security::check_selinux(&sc)?;
    let container_resources = config.linux.as_ref().and_then(|l| l.resources.as_ref());
    process.set_oom_score_adj(resources::oom_score_adj(
        container_resources,
        input.restrict_oom_score_adj,
    )?);

    // Mounts and devices.
    let mut mount_list = mounts::default_mounts(privileged, &modes, input.pod_files);
    mount_list.extend(mounts::pod_file_mounts(input.pod_files, sc.readonly_rootfs));
    let (cri_mounts, rootfs_propagation) = mounts::cri_mounts(&config.mounts)?;
    mounts::check_host_propagation(&config.mounts)?;
    let mount_list = mounts::merge(mount_list, cri_mounts);
    let devs = mounts::devices(&config.devices, privileged)?;

    // Linux section.
    let mut res = resources::linux_resources(container_resources)?;
    if input.drop_hugepage_limits && res.hugepage_limits().is_some() {
        // A kubelet sends one (zero) limit per page size on every container.
        tracing::debug!(
            container_id = input.container_id,
            "no hugetlb cgroup controller: hugepage limits ignored"
        );
        res.set_hugepage_limits(None);
    }
    res.set_devices(Some(devs.cgroup_rules));
    let mut linux = Linux::default();
    // A pod user namespace: joined by path; its maps ride along so the
    // runtime can tell an id-mapped mount with the pod's maps from others.
    match (&input.pod_namespaces.user, userns::pod_maps(input.sandbox)?) {
        (Some(_), Some(maps)) => {
            linux.set_uid_mappings(Some(oci_maps(&maps.uids)?));
            linux.set_gid_mappings(Some(oci_maps(&maps.gids)?));
        }
        _ => {
            linux.set_uid_mappings(None);
            linux.set_gid_mappings(None);
        }
    }
    linux.set_sysctl(Some(namespaces::sysctls(input.sandbox, &modes)?));
    linux.set_resources(Some(res));
    linux.set_cgroups_path(Some(cgroups_path(input.cgroup_parent, input.container_id)?));
    linux.set_namespaces(Some(namespaces::namespaces(
        &modes,
        input.pod_namespaces,
        input.target_pid,
        privileged,
    )?));
    linux.set_devices(Some(devs.devices));
    let caps = process
        .capabilities()
        .as_ref()
        .and_then(|c| c.bounding().clone())
        .unwrap_or_default();
    linux.set_seccomp(security::seccomp(&sc, privileged, &caps)?);
    linux.set_rootfs_propagation(rootfs_propagation);
    let (masked, readonly) = security::masked_and_readonly_paths(&sc, privileged);
    linux.set_masked_paths(Some(masked));
    linux.set_readonly_paths(Some(readonly));
    linux.set_mount_label(None);

    let root = RootBuilder::default()
        .path(input.rootfs)
        .readonly(sc.readonly_rootfs)
        .build()
        .map_err(build_err("root"))?;

    let mut spec = Spec::default();
    spec.set_version(OCI_VERSION.into());
    spec.set_root(Some(root));
    spec.set_mounts(Some(mount_list));
    spec.set_process(Some(process));
    spec.set_hostname(if modes.host_network() || hostname.is_empty() {
        None
    } else {
        Some(hostname)
    });
    spec.set_domainname(None);
    spec.set_hooks(None);
    spec.set_annotations(Some(container_annotations(input)));
    spec.set_linux(Some(linux));
    Ok(spec)
}

/// `<parent>/<id>` for the cgroupfs driver, always absolute. A systemd slice
/// parent means the kubelet runs the systemd driver, which berth does not have.
pub fn cgroups_path(parent: &str, container_id: &str) -> Result<PathBuf> {
    let parent = parent.trim_matches('/');
    if parent.ends_with(".slice") {
        return Err(Error::Unimplemented(format!(
            "linux.cgroup_parent: {parent:?} is a systemd slice; berth only supports the cgroupfs driver"
        )));
    }
    if parent.split('/').any(|c| c == "..") {
        return Err(Error::InvalidArgument(format!(
            "linux.cgroup_parent: {parent:?} must not contain \"..\""
        )));
    }
    Ok(if parent.is_empty() {
        PathBuf::from(format!("/{container_id}"))
    } else {
        PathBuf::from(format!("/{parent}/{container_id}"))
    })
}

fn container_annotations(input: &SpecInput) -> HashMap<String, String> {
    let meta = input.sandbox.metadata.clone().unwrap_or_default();
    let name = input
        .config
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    let image = input
        .config
        .image
        .as_ref()
        .map(|i| {
            if i.user_specified_image.is_empty() {
                i.image.clone()
            } else {
                i.user_specified_image.clone()
            }
        })
        .unwrap_or_default();
    [
        (annotations::CONTAINER_TYPE, "container".to_string()),
        (annotations::SANDBOX_ID, input.sandbox_id.to_string()),
        (annotations::SANDBOX_NAME, meta.name),
        (annotations::SANDBOX_NAMESPACE, meta.namespace),
        (annotations::SANDBOX_UID, meta.uid),
        (annotations::CONTAINER_NAME, name),
        (annotations::IMAGE_NAME, image),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Builds an empty `LinuxResources` (no devices rule, nothing limited).
pub(crate) fn empty_resources() -> Result<oci_spec::runtime::LinuxResources> {
    LinuxResourcesBuilder::default()
        .build()
        .map_err(build_err("resources"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{
        Capability as CriCaps, ContainerMetadata, ImageSpec, LinuxContainerResources,
        LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption,
        PodSandboxMetadata,
    };
    use oci_spec::runtime::LinuxNamespaceType;

    struct Fixture {
        rootfs: tempfile::TempDir,
        config: ContainerConfig,
        sandbox: PodSandboxConfig,
        image: ImageConfig,
        pod_ns: PodNamespaces,
        pod_files: PodFiles,
    }

    impl Fixture {
        fn new() -> Self {
            let rootfs = tempfile::tempdir().unwrap();
            std::fs::create_dir(rootfs.path().join("etc")).unwrap();
            std::fs::write(
                rootfs.path().join("etc/passwd"),
                "root:x:0:0::/root:/bin/sh\nweb:x:33:33::/:/bin/sh\n",
            )
            .unwrap();
            std::fs::write(rootfs.path().join("etc/group"), "root:x:0:\nweb:x:33:\n").unwrap();
            Fixture {
                rootfs,
                config: ContainerConfig {
                    metadata: Some(ContainerMetadata {
                        name: "app".into(),
                        attempt: 0,
                    }),
                    image: Some(ImageSpec {
                        image: "docker.io/library/busybox:latest".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                sandbox: PodSandboxConfig {
                    metadata: Some(PodSandboxMetadata {
                        name: "pod".into(),
                        uid: "uid-1".into(),
                        namespace: "ns".into(),
                        attempt: 0,
                    }),
                    hostname: "pod-host".into(),
                    ..Default::default()
                },
                image: ImageConfig {
                    cmd: vec!["/bin/sh".into()],
                    ..Default::default()
                },
                pod_ns: PodNamespaces {
                    net: Some("/run/berth/ns/s/net".into()),
                    ipc: Some("/run/berth/ns/s/ipc".into()),
                    uts: Some("/run/berth/ns/s/uts".into()),
                    pid: Some("/run/berth/ns/s/pid".into()),
                    user: None,
                },
                pod_files: PodFiles {
                    hostname: Some("/run/berth/pods/s/hostname".into()),
                    hosts: Some("/run/berth/pods/s/hosts".into()),
                    resolv_conf: Some("/run/berth/pods/s/resolv.conf".into()),
                    shm: None,
                },
            }
        }

        fn spec(&self) -> Result<Spec> {
            self.spec_with(false)
        }

        fn spec_with(&self, drop_hugepage_limits: bool) -> Result<Spec> {
            container_spec(&SpecInput {
                container_id: "c1",
                sandbox_id: "s1",
                config: &self.config,
                sandbox: &self.sandbox,
                image: &self.image,
                rootfs: self.rootfs.path(),
                pod_namespaces: &self.pod_ns,
                target_pid: None,
                cgroup_parent: "/kubepods/pod-uid-1/",
                pod_files: &self.pod_files,
                restrict_oom_score_adj: false,
                drop_hugepage_limits,
            })
        }

        fn sc(&mut self) -> &mut LinuxContainerSecurityContext {
            self.config
                .linux
                .get_or_insert_with(Default::default)
                .security_context
                .get_or_insert_with(Default::default)
        }
    }

    #[test]
    fn hugepage_limits_are_dropped_only_when_asked_and_still_validated() {
        let mut f = Fixture::new();
        f.config
            .linux
            .get_or_insert_with(Default::default)
            .resources = Some(LinuxContainerResources {
            hugepage_limits: vec![
                berth_proto::v1::HugepageLimit {
                    page_size: "2MB".into(),
                    limit: 0,
                },
                berth_proto::v1::HugepageLimit {
                    page_size: "1GB".into(),
                    limit: 0,
                },
            ],
            ..Default::default()
        });
        let pages = |s: Spec| {
            s.linux()
                .as_ref()
                .and_then(|l| l.resources().clone())
                .and_then(|r| r.hugepage_limits().clone())
        };
        assert_eq!(pages(f.spec_with(false).unwrap()).map(|p| p.len()), Some(2));
        assert_eq!(pages(f.spec_with(true).unwrap()), None);
        f.config
            .linux
            .as_mut()
            .unwrap()
            .resources
            .as_mut()
            .unwrap()
            .hugepage_limits[1]
            .page_size
            .clear();
        let err = f.spec_with(true).unwrap_err().to_string();
        assert!(err.contains("hugepage_limits[1].page_size"), "{err}");
    }

    #[test]
    fn plain_container_gets_containerd_defaults() {
        let f = Fixture::new();
        let spec = f.spec().unwrap();
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.args().as_deref(), Some(&["/bin/sh".to_string()][..]));
        assert!(p
            .env()
            .as_ref()
            .unwrap()
            .contains(&"HOSTNAME=pod-host".to_string()));
        assert_eq!(p.cwd(), Path::new("/"));
        assert_eq!((p.user().uid(), p.user().gid()), (0, 0));
        assert_eq!(p.no_new_privileges(), Some(false));
        assert!(p.rlimits().is_none());
        assert_eq!(spec.hostname().as_deref(), Some("pod-host"));
        assert_eq!(spec.root().as_ref().unwrap().path(), f.rootfs.path());
        assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(false));

        let linux = spec.linux().as_ref().unwrap();
        assert_eq!(
            linux.cgroups_path().as_deref(),
            Some(Path::new("/kubepods/pod-uid-1/c1"))
        );
        let ns: Vec<_> = linux
            .namespaces()
            .iter()
            .flatten()
            .map(|n| n.typ())
            .collect();
        assert_eq!(
            ns,
            [
                LinuxNamespaceType::Mount,
                LinuxNamespaceType::Network,
                LinuxNamespaceType::Uts,
                LinuxNamespaceType::Ipc,
                LinuxNamespaceType::Pid,
                LinuxNamespaceType::Cgroup
            ]
        );
        assert!(
            linux.seccomp().is_none(),
            "no profile asked for means unconfined"
        );
        assert!(linux
            .masked_paths()
            .as_ref()
            .unwrap()
            .contains(&"/proc/kcore".to_string()));

        let dests: Vec<_> = spec
            .mounts()
            .iter()
            .flatten()
            .map(|m| m.destination().display().to_string())
            .collect();
        for d in [
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/shm",
            "/dev/mqueue",
            "/sys",
            "/sys/fs/cgroup",
            "/etc/hostname",
            "/etc/hosts",
            "/etc/resolv.conf",
        ] {
            assert!(dests.contains(&d.to_string()), "{d} in {dests:?}");
        }
        let ann = spec.annotations().as_ref().unwrap();
        assert_eq!(
            ann.get(annotations::CONTAINER_TYPE).map(String::as_str),
            Some("container")
        );
        assert_eq!(
            ann.get(annotations::SANDBOX_ID).map(String::as_str),
            Some("s1")
        );
        assert_eq!(
            ann.get(annotations::CONTAINER_NAME).map(String::as_str),
            Some("app")
        );
        assert_eq!(
            ann.get(annotations::SANDBOX_NAMESPACE).map(String::as_str),
            Some("ns")
        );
        assert_eq!(
            ann.get(annotations::IMAGE_NAME).map(String::as_str),
            Some("docker.io/library/busybox:latest")
        );

        // The result is valid OCI JSON that round-trips.
        let json = serde_json::to_string(&spec).unwrap();
        let back: Spec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, spec);
    }

    #[test]
    fn restricted_container() {
        let mut f = Fixture::new();
        *f.sc() = LinuxContainerSecurityContext {
            run_as_username: "web".into(),
            readonly_rootfs: true,
            no_new_privs: true,
            capabilities: Some(CriCaps {
                drop_capabilities: vec!["ALL".into()],
                ..Default::default()
            }),
            seccomp: Some(berth_proto::v1::SecurityProfile::default()),
            ..Default::default()
        };
        f.config.linux.as_mut().unwrap().resources = Some(LinuxContainerResources {
            memory_limit_in_bytes: 1 << 26,
            oom_score_adj: 999,
            ..Default::default()
        });
        let spec = f.spec().unwrap();
        let p = spec.process().as_ref().unwrap();
        assert_eq!((p.user().uid(), p.user().gid()), (33, 33));
        assert_eq!(p.no_new_privileges(), Some(true));
        assert!(p
            .capabilities()
            .as_ref()
            .unwrap()
            .bounding()
            .as_ref()
            .unwrap()
            .is_empty());
        assert_eq!(p.oom_score_adj(), Some(999));
        assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
        let hosts = spec
            .mounts()
            .iter()
            .flatten()
            .find(|m| m.destination() == Path::new("/etc/hosts"))
            .unwrap();
        assert!(hosts
            .options()
            .as_ref()
            .unwrap()
            .contains(&"ro".to_string()));
        let linux = spec.linux().as_ref().unwrap();
        let sec = linux.seccomp().as_ref().unwrap();
        // With every capability dropped even chroot is refused.
        assert!(!sec
            .syscalls()
            .iter()
            .flatten()
            .any(|s| s.names().contains(&"chroot".to_string())));
        assert_eq!(
            linux
                .resources()
                .as_ref()
                .unwrap()
                .memory()
                .as_ref()
                .unwrap()
                .limit(),
            Some(1 << 26)
        );
    }

    #[test]
    fn privileged_container() {
        let mut f = Fixture::new();
        f.sc().privileged = true;
        f.sc().seccomp = Some(berth_proto::v1::SecurityProfile::default());
        let err = f.spec().unwrap_err();
        assert!(err.to_string().contains("privileged"), "{err}");
        f.sandbox.linux = Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                privileged: true,
                ..Default::default()
            }),
            ..Default::default()
        });
        let spec = f.spec().unwrap();
        let linux = spec.linux().as_ref().unwrap();
        assert!(linux.seccomp().is_none());
        assert!(linux.masked_paths().as_ref().unwrap().is_empty());
        assert!(linux.readonly_paths().as_ref().unwrap().is_empty());
        assert!(!linux
            .namespaces()
            .iter()
            .flatten()
            .any(|n| n.typ() == LinuxNamespaceType::Cgroup));
        let rules = linux
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .clone()
            .unwrap();
        assert!(rules[0].allow() && rules[0].access().as_deref() == Some("rwm"));
        let sys = spec
            .mounts()
            .iter()
            .flatten()
            .find(|m| m.destination() == Path::new("/sys"))
            .unwrap();
        assert!(!sys.options().as_ref().unwrap().contains(&"ro".to_string()));
        let caps = spec
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .clone()
            .unwrap();
        assert_eq!(
            caps.bounding().as_ref().unwrap().len(),
            security::current_capabilities().len()
        );
        assert_eq!(
            spec.process().as_ref().unwrap().no_new_privileges(),
            Some(false)
        );
    }

    #[test]
    fn host_network_pod_has_no_hostname_and_no_net_namespace() {
        let mut f = Fixture::new();
        f.sc().namespace_options = Some(NamespaceOption {
            network: NamespaceMode::Node as i32,
            ipc: NamespaceMode::Node as i32,
            pid: NamespaceMode::Node as i32,
            ..Default::default()
        });
        f.pod_ns = PodNamespaces::default();
        let spec = f.spec().unwrap();
        assert!(spec.hostname().is_none());
        let ns: Vec<_> = spec
            .linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .iter()
            .flatten()
            .map(|n| n.typ())
            .collect();
        assert_eq!(ns, [LinuxNamespaceType::Mount, LinuxNamespaceType::Cgroup]);
        // HOSTNAME is still the pod's hostname.
        assert!(spec
            .process()
            .as_ref()
            .unwrap()
            .env()
            .as_ref()
            .unwrap()
            .contains(&"HOSTNAME=pod-host".to_string()));
    }

    /// Runs the generated spec through berth-runtime's own validation, with
    /// pins and pod files that exist, so a mount option, namespace or field the
    /// runtime would reject is caught here.
    fn runtime_accepts(spec: &Spec) {
        let raw = serde_json::to_value(spec).unwrap();
        berth_runtime::spec::validate_raw(&raw).unwrap_or_else(|e| panic!("raw: {e}"));
        let bundle = tempfile::tempdir().unwrap();
        berth_runtime::spec::validate(spec, bundle.path()).unwrap_or_else(|e| panic!("typed: {e}"));
    }

    fn with_real_pins(f: &mut Fixture) -> tempfile::TempDir {
        let files = tempfile::tempdir().unwrap();
        for n in ["hostname", "hosts", "resolv.conf"] {
            std::fs::write(files.path().join(n), "x\n").unwrap();
        }
        std::fs::create_dir(files.path().join("shm")).unwrap();
        f.pod_files = PodFiles {
            hostname: Some(files.path().join("hostname")),
            hosts: Some(files.path().join("hosts")),
            resolv_conf: Some(files.path().join("resolv.conf")),
            shm: Some(files.path().join("shm")),
        };
        f.pod_ns = PodNamespaces {
            net: Some("/proc/self/ns/net".into()),
            ipc: Some("/proc/self/ns/ipc".into()),
            uts: Some("/proc/self/ns/uts".into()),
            pid: Some("/proc/self/ns/pid".into()),
            user: None,
        };
        files
    }

    #[test]
    fn generated_specs_pass_the_runtime_validator() {
        let mut f = Fixture::new();
        let files = with_real_pins(&mut f);
        runtime_accepts(&f.spec().unwrap());

        // Everything switched on at once.
        f.config.mounts = vec![berth_proto::v1::Mount {
            container_path: "/data".into(),
            host_path: files.path().to_str().unwrap().into(),
            readonly: true,
            propagation: berth_proto::v1::MountPropagation::PropagationHostToContainer as i32,
            ..Default::default()
        }];
        f.config.devices = vec![berth_proto::v1::Device {
            container_path: "/dev/fuse0".into(),
            host_path: "/dev/null".into(),
            permissions: "rw".into(),
        }];
        f.sandbox.linux = Some(LinuxPodSandboxConfig {
            sysctls: [(
                "net.ipv4.ip_unprivileged_port_start".to_string(),
                "0".to_string(),
            )]
            .into(),
            ..Default::default()
        });
        *f.sc() = LinuxContainerSecurityContext {
            run_as_user: Some(berth_proto::v1::Int64Value { value: 33 }),
            readonly_rootfs: true,
            no_new_privs: true,
            seccomp: Some(berth_proto::v1::SecurityProfile::default()),
            capabilities: Some(CriCaps {
                add_capabilities: vec!["NET_ADMIN".into()],
                drop_capabilities: vec!["MKNOD".into()],
                add_ambient_capabilities: vec!["NET_BIND_SERVICE".into()],
            }),
            namespace_options: Some(NamespaceOption {
                pid: NamespaceMode::Container as i32,
                ..Default::default()
            }),
            ..Default::default()
        };
        f.config.linux.as_mut().unwrap().resources = Some(LinuxContainerResources {
            cpu_shares: 256,
            cpu_quota: 20_000,
            cpu_period: 100_000,
            memory_limit_in_bytes: 1 << 27,
            oom_score_adj: 100,
            ..Default::default()
        });
        let spec = f.spec().unwrap();
        runtime_accepts(&spec);
        berth_runtime::security::build_seccomp(
            spec.linux().as_ref().unwrap().seccomp().as_ref().unwrap(),
        )
        .unwrap_or_else(|e| panic!("libseccomp rejects the profile: {e}"));

        // Privileged, with every host device.
        f.sandbox.linux = Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                privileged: true,
                ..Default::default()
            }),
            ..Default::default()
        });
        f.sc().privileged = true;
        runtime_accepts(&f.spec().unwrap());
    }

    #[test]
    fn cgroup_paths() {
        for (parent, want) in [
            ("/kubepods/burstable/podx", "/kubepods/burstable/podx/c1"),
            ("kubepods/", "/kubepods/c1"),
            ("", "/c1"),
            ("/", "/c1"),
        ] {
            assert_eq!(
                cgroups_path(parent, "c1").unwrap(),
                PathBuf::from(want),
                "{parent:?}"
            );
        }
        assert!(matches!(
            cgroups_path("kubepods-burstable.slice", "c1"),
            Err(Error::Unimplemented(_))
        ));
        assert!(cgroups_path("/kubepods/../etc", "c1")
            .unwrap_err()
            .to_string()
            .contains("cgroup_parent"));
    }

    #[test]
    fn errors_surface_with_their_field() {
        let mut f = Fixture::new();
        f.image = ImageConfig::default();
        assert!(f
            .spec()
            .unwrap_err()
            .to_string()
            .contains("container has no command"));
        let mut f = Fixture::new();
        f.sc().run_as_username = "nobody".into();
        assert!(f
            .spec()
            .unwrap_err()
            .to_string()
            .contains("run_as_username"));
        let mut f = Fixture::new();
        f.sc().capabilities = Some(CriCaps {
            add_capabilities: vec!["CAP_FLY".into()],
            ..Default::default()
        });
        assert!(f.spec().unwrap_err().to_string().contains("CAP_FLY"));
    }
}

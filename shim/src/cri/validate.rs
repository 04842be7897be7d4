//! Validation at the door: RunPodSandbox and CreateContainer refuse, before
//! anything is created, every input that could later fail a syscall, an exec
//! or a CNI call, so that no accepted pod or container can wedge its own stop
//! or removal. Every string that reaches a path, an environment variable or a
//! command line is bounded and free of NUL; names that reach `CNI_ARGS` are
//! free of its separators; every enum value must be one the CRI defines;
//! sysctls must be namespaced (a pod must not set a host-wide knob); a
//! Localhost seccomp profile is an absolute path without `..`; a
//! `cgroup_parent` has no `..`. Errors are `INVALID_ARGUMENT` naming the
//! field. The checks that need more context (mounts against the host, the
//! user against the image) stay with the code that has it (`spec/`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Component, Path};

use berth_proto::v1::{
    security_profile::ProfileType, Capability, ContainerConfig, LinuxContainerResources,
    LinuxContainerSecurityContext, LinuxSandboxSecurityContext, MountPropagation, NamespaceMode,
    NamespaceOption, PodSandboxConfig, Protocol, SeLinuxOption, SecurityProfile, Signal,
    SupplementalGroupsPolicy,
};

use crate::error::{Error, Result};

/// Pod and container names, namespaces, uids (a DNS subdomain's length).
pub const NAME_MAX: usize = 253;
/// A label or annotation key (a 253-byte prefix, `/`, a 63-byte name).
pub const KEY_MAX: usize = 317;
/// A label value.
pub const LABEL_VALUE_MAX: usize = 4096;
/// All annotations (or all labels) of one object together, as in Kubernetes.
pub const MAP_TOTAL_MAX: usize = 256 * 1024;
/// Paths (the kernel's PATH_MAX).
pub const PATH_MAX: usize = 4096;
/// One argument or environment entry (the kernel's MAX_ARG_STRLEN, less the NUL).
pub const ARG_MAX: usize = 128 * 1024 - 1;
/// Command, args and environment together: well under the kernel's limit
/// for an exec (a quarter of an 8 MiB stack).
pub const EXEC_TOTAL_MAX: usize = 1024 * 1024;
/// Entries of a repeated field (mounts, devices, ports, DNS entries, ...).
pub const LIST_MAX: usize = 1024;
/// Short identifiers: capabilities, sysctl names, SELinux parts, user names.
pub const SHORT_MAX: usize = 256;

/// At most 64 characters of `v`, for messages about very long values.
fn shown(v: &str) -> String {
    if v.len() <= 64 {
        format!("{v:?}")
    } else {
        let mut end = 64;
        while !v.is_char_boundary(end) {
            end -= 1;
        }
        format!("{:?}... ({} bytes)", &v[..end], v.len())
    }
}

fn bad(field: &str, why: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("{field}: {why}"))
}

/// Bounded, no NUL.
fn text(field: &str, v: &str, max: usize) -> Result<()> {
    if v.len() > max {
        return Err(bad(
            field,
            format!("{} is longer than {max} bytes", shown(v)),
        ));
    }
    if v.contains('\0') {
        return Err(bad(field, format!("{} contains NUL", shown(v))));
    }
    Ok(())
}

/// Bounded, no control characters (it ends up in a file line or a message).
fn line(field: &str, v: &str, max: usize) -> Result<()> {
    text(field, v, max)?;
    if v.chars().any(char::is_control) {
        return Err(bad(
            field,
            format!("{} contains control characters", shown(v)),
        ));
    }
    Ok(())
}

/// Non-empty, bounded, no whitespace or control characters, and none of the
/// characters that separate path components or `CNI_ARGS` entries.
fn token(field: &str, v: &str, max: usize) -> Result<()> {
    if v.is_empty() {
        return Err(bad(field, "empty"));
    }
    line(field, v, max)?;
    if let Some(c) = v
        .chars()
        .find(|c| c.is_whitespace() || matches!(c, '/' | ';' | '='))
    {
        return Err(bad(field, format!("{} contains {c:?}", shown(v))));
    }
    Ok(())
}

fn no_dotdot(field: &str, v: &str) -> Result<()> {
    if Path::new(v).components().any(|c| c == Component::ParentDir) {
        return Err(bad(field, format!("{} contains '..'", shown(v))));
    }
    Ok(())
}

/// Absolute, without `..`, bounded, no NUL.
fn abs_path(field: &str, v: &str) -> Result<()> {
    text(field, v, PATH_MAX)?;
    if !v.starts_with('/') {
        return Err(bad(field, format!("{} is not an absolute path", shown(v))));
    }
    no_dotdot(field, v)
}

/// A path the container or the runtime resolves itself: bounded, no NUL.
fn path(field: &str, v: &str) -> Result<()> {
    text(field, v, PATH_MAX)
}

fn list<T>(field: &str, v: &[T], max: usize) -> Result<()> {
    if v.len() > max {
        return Err(bad(field, format!("{} entries, at most {max}", v.len())));
    }
    Ok(())
}

fn known<E: TryFrom<i32>>(field: &str, v: i32) -> Result<()> {
    E::try_from(v)
        .map(|_| ())
        .map_err(|_| bad(field, format!("unknown value {v}")))
}

/// Labels or annotations: bounded keys and values, bounded in total.
fn string_map(field: &str, m: &HashMap<String, String>, value_max: usize) -> Result<()> {
    let mut total = 0usize;
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort(); // the first bad key is the same every time
    for k in keys {
        let v = &m[k];
        let f = format!("{field}[{}]", shown(k));
        if k.is_empty() {
            return Err(bad(field, "empty key"));
        }
        line(&format!("{field} key"), k, KEY_MAX)?;
        text(&f, v, value_max)?;
        total += k.len() + v.len();
    }
    if total > MAP_TOTAL_MAX {
        return Err(bad(
            field,
            format!("{total} bytes in all, at most {MAP_TOTAL_MAX}"),
        ));
    }
    Ok(())
}

fn security_profile(field: &str, p: Option<&SecurityProfile>, seccomp: bool) -> Result<()> {
    let Some(p) = p else { return Ok(()) };
    known::<ProfileType>(&format!("{field}.profile_type"), p.profile_type)?;
    let f = format!("{field}.localhost_ref");
    if seccomp && p.profile_type == ProfileType::Localhost as i32 {
        abs_path(&f, &p.localhost_ref)
    } else {
        line(&f, &p.localhost_ref, PATH_MAX)
    }
}

/// The deprecated string form: `localhost/<absolute path>` for a file.
fn deprecated_seccomp(field: &str, v: &str) -> Result<()> {
    line(field, v, PATH_MAX)?;
    match v.strip_prefix("localhost/") {
        Some(p) => abs_path(field, p),
        None => Ok(()),
    }
}

fn selinux(field: &str, o: Option<&SeLinuxOption>) -> Result<()> {
    let Some(o) = o else { return Ok(()) };
    for (f, v) in [
        ("user", &o.user),
        ("role", &o.role),
        ("type", &o.r#type),
        ("level", &o.level),
    ] {
        line(&format!("{field}.{f}"), v, SHORT_MAX)?;
    }
    Ok(())
}

fn namespace_options(field: &str, ns: Option<&NamespaceOption>) -> Result<()> {
    let Some(ns) = ns else { return Ok(()) };
    for (f, v) in [("network", ns.network), ("pid", ns.pid), ("ipc", ns.ipc)] {
        known::<NamespaceMode>(&format!("{field}.{f}"), v)?;
    }
    line(&format!("{field}.target_id"), &ns.target_id, SHORT_MAX)?;
    if let Some(u) = &ns.userns_options {
        known::<NamespaceMode>(&format!("{field}.userns_options.mode"), u.mode)?;
        list(&format!("{field}.userns_options.uids"), &u.uids, LIST_MAX)?;
        list(&format!("{field}.userns_options.gids"), &u.gids, LIST_MAX)?;
    }
    Ok(())
}

fn groups(field: &str, g: &[i64]) -> Result<()> {
    // NGROUPS_MAX.
    list(field, g, 65536)
}

fn resources(field: &str, r: Option<&LinuxContainerResources>) -> Result<()> {
    let Some(r) = r else { return Ok(()) };
    line(&format!("{field}.cpuset_cpus"), &r.cpuset_cpus, PATH_MAX)?;
    line(&format!("{field}.cpuset_mems"), &r.cpuset_mems, PATH_MAX)?;
    list(&format!("{field}.hugepage_limits"), &r.hugepage_limits, 64)?;
    for (i, h) in r.hugepage_limits.iter().enumerate() {
        token(
            &format!("{field}.hugepage_limits[{i}].page_size"),
            &h.page_size,
            32,
        )?;
    }
    // Keys name files in the container's cgroup directory.
    let mut keys: Vec<&String> = r.unified.keys().collect();
    keys.sort();
    for k in keys {
        let f = format!("{field}.unified[{}]", shown(k));
        token(&f, k, SHORT_MAX)?;
        if k.starts_with('.') {
            return Err(bad(&f, "not a cgroup file name"));
        }
        line(&f, &r.unified[k], PATH_MAX)?;
    }
    Ok(())
}

/// Which sysctls a pod may set: those of the namespaces it owns (network,
/// IPC, UTS). Everything else (`vm.*`, most of `kernel.*` and `fs.*`) is
/// node-wide.
enum SysctlNs {
    Net,
    Ipc,
    Uts,
}

fn sysctl_namespace(key: &str) -> Option<SysctlNs> {
    const IPC: [&str; 8] = [
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
    ];
    if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        Some(SysctlNs::Ipc)
    } else if key.starts_with("net.") {
        Some(SysctlNs::Net)
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        Some(SysctlNs::Uts)
    } else {
        None
    }
}

fn sysctls(field: &str, m: &HashMap<String, String>, ns: Option<&NamespaceOption>) -> Result<()> {
    list(field, &m.keys().collect::<Vec<_>>(), LIST_MAX)?;
    let host_net = ns.is_some_and(|n| n.network == NamespaceMode::Node as i32);
    let host_ipc = ns.is_some_and(|n| n.ipc == NamespaceMode::Node as i32);
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort();
    for k in keys {
        let f = format!("{field}[{}]", shown(k));
        token(&f, k, SHORT_MAX)?;
        if k.split('.').any(|c| c.is_empty() || c == "..") || k.contains("..") {
            return Err(bad(&f, "contains '..' or an empty component"));
        }
        let host = match sysctl_namespace(k) {
            None => {
                return Err(bad(
                    &f,
                    "not a namespaced sysctl (only net.*, the IPC ones and kernel.hostname/domainname may be set for a pod)",
                ))
            }
            Some(SysctlNs::Net | SysctlNs::Uts) => host_net,
            Some(SysctlNs::Ipc) => host_ipc,
        };
        if host {
            return Err(bad(
                &f,
                "the pod shares this sysctl's namespace with the node",
            ));
        }
        line(&f, &m[k], PATH_MAX)?;
    }
    Ok(())
}

#[allow(deprecated)] // seccomp_profile_path: older kubelets still send it
fn sandbox_security(field: &str, sc: Option<&LinuxSandboxSecurityContext>) -> Result<()> {
    let Some(sc) = sc else { return Ok(()) };
    namespace_options(
        &format!("{field}.namespace_options"),
        sc.namespace_options.as_ref(),
    )?;
    selinux(
        &format!("{field}.selinux_options"),
        sc.selinux_options.as_ref(),
    )?;
    groups(
        &format!("{field}.supplemental_groups"),
        &sc.supplemental_groups,
    )?;
    known::<SupplementalGroupsPolicy>(
        &format!("{field}.supplemental_groups_policy"),
        sc.supplemental_groups_policy,
    )?;
    security_profile(&format!("{field}.seccomp"), sc.seccomp.as_ref(), true)?;
    security_profile(&format!("{field}.apparmor"), sc.apparmor.as_ref(), false)?;
    deprecated_seccomp(
        &format!("{field}.seccomp_profile_path"),
        &sc.seccomp_profile_path,
    )
}

/// RunPodSandbox's config, before anything is created.
pub(crate) fn pod_sandbox(c: &PodSandboxConfig) -> Result<()> {
    if let Some(md) = &c.metadata {
        for (f, v) in [
            ("config.metadata.name", &md.name),
            ("config.metadata.namespace", &md.namespace),
            ("config.metadata.uid", &md.uid),
        ] {
            token(f, v, NAME_MAX)?;
        }
    }
    line("config.hostname", &c.hostname, 64)?;
    if !c.log_directory.is_empty() {
        abs_path("config.log_directory", &c.log_directory)?;
    }
    if let Some(d) = &c.dns_config {
        for (f, l) in [
            ("config.dns_config.servers", &d.servers),
            ("config.dns_config.searches", &d.searches),
            ("config.dns_config.options", &d.options),
        ] {
            list(f, l, 32)?;
            for (i, v) in l.iter().enumerate() {
                line(&format!("{f}[{i}]"), v, NAME_MAX)?;
            }
        }
    }
    list("config.port_mappings", &c.port_mappings, LIST_MAX)?;
    for (i, p) in c.port_mappings.iter().enumerate() {
        let f = format!("config.port_mappings[{i}]");
        known::<Protocol>(&format!("{f}.protocol"), p.protocol)?;
        for (name, port) in [
            ("container_port", p.container_port),
            ("host_port", p.host_port),
        ] {
            if !(0..=65535).contains(&port) {
                return Err(bad(&format!("{f}.{name}"), format!("{port} is not a port")));
            }
        }
        if !p.host_ip.is_empty() && p.host_ip.parse::<IpAddr>().is_err() {
            return Err(bad(
                &format!("{f}.host_ip"),
                format!("{} is not an IP address", shown(&p.host_ip)),
            ));
        }
    }
    string_map("config.labels", &c.labels, LABEL_VALUE_MAX)?;
    string_map("config.annotations", &c.annotations, MAP_TOTAL_MAX)?;
    if let Some(l) = &c.linux {
        if !l.cgroup_parent.is_empty() {
            line("config.linux.cgroup_parent", &l.cgroup_parent, PATH_MAX)?;
            no_dotdot("config.linux.cgroup_parent", &l.cgroup_parent)?;
        }
        let ns = l
            .security_context
            .as_ref()
            .and_then(|s| s.namespace_options.as_ref());
        sysctls("config.linux.sysctls", &l.sysctls, ns)?;
        sandbox_security("config.linux.security_context", l.security_context.as_ref())?;
        resources("config.linux.overhead", l.overhead.as_ref())?;
        resources("config.linux.resources", l.resources.as_ref())?;
    }
    Ok(())
}

fn capabilities(field: &str, c: Option<&Capability>) -> Result<()> {
    let Some(c) = c else { return Ok(()) };
    for (f, l) in [
        ("add_capabilities", &c.add_capabilities),
        ("drop_capabilities", &c.drop_capabilities),
        ("add_ambient_capabilities", &c.add_ambient_capabilities),
    ] {
        let f = format!("{field}.{f}");
        list(&f, l, 128)?;
        for (i, v) in l.iter().enumerate() {
            token(&format!("{f}[{i}]"), v, 64)?;
        }
    }
    Ok(())
}

#[allow(deprecated)] // the string forms: older kubelets still send them
fn container_security(field: &str, sc: Option<&LinuxContainerSecurityContext>) -> Result<()> {
    let Some(sc) = sc else { return Ok(()) };
    capabilities(&format!("{field}.capabilities"), sc.capabilities.as_ref())?;
    namespace_options(
        &format!("{field}.namespace_options"),
        sc.namespace_options.as_ref(),
    )?;
    selinux(
        &format!("{field}.selinux_options"),
        sc.selinux_options.as_ref(),
    )?;
    line(
        &format!("{field}.run_as_username"),
        &sc.run_as_username,
        SHORT_MAX,
    )?;
    groups(
        &format!("{field}.supplemental_groups"),
        &sc.supplemental_groups,
    )?;
    known::<SupplementalGroupsPolicy>(
        &format!("{field}.supplemental_groups_policy"),
        sc.supplemental_groups_policy,
    )?;
    for (f, l) in [
        ("masked_paths", &sc.masked_paths),
        ("readonly_paths", &sc.readonly_paths),
    ] {
        let f = format!("{field}.{f}");
        list(&f, l, LIST_MAX)?;
        for (i, p) in l.iter().enumerate() {
            abs_path(&format!("{f}[{i}]"), p)?;
        }
    }
    security_profile(&format!("{field}.seccomp"), sc.seccomp.as_ref(), true)?;
    security_profile(&format!("{field}.apparmor"), sc.apparmor.as_ref(), false)?;
    line(
        &format!("{field}.apparmor_profile"),
        &sc.apparmor_profile,
        PATH_MAX,
    )?;
    deprecated_seccomp(
        &format!("{field}.seccomp_profile_path"),
        &sc.seccomp_profile_path,
    )
}

/// CreateContainer's config, before anything is created.
pub(crate) fn container(c: &ContainerConfig) -> Result<()> {
    if let Some(md) = &c.metadata {
        token("config.metadata.name", &md.name, NAME_MAX)?;
    }
    if let Some(i) = &c.image {
        line("config.image.image", &i.image, PATH_MAX)?;
        line(
            "config.image.user_specified_image",
            &i.user_specified_image,
            PATH_MAX,
        )?;
        line("config.image.runtime_handler", &i.runtime_handler, NAME_MAX)?;
        string_map("config.image.annotations", &i.annotations, MAP_TOTAL_MAX)?;
    }
    let mut exec_total = 0usize;
    for (f, l) in [("config.command", &c.command), ("config.args", &c.args)] {
        for (i, v) in l.iter().enumerate() {
            text(&format!("{f}[{i}]"), v, ARG_MAX)?;
            exec_total += v.len() + 1;
        }
    }
    for (i, kv) in c.envs.iter().enumerate() {
        let f = format!("config.envs[{i}]");
        if kv.key.is_empty() {
            return Err(bad(&format!("{f}.key"), "empty"));
        }
        if kv.key.contains('=') {
            return Err(bad(
                &format!("{f}.key"),
                format!("{} contains '='", shown(&kv.key)),
            ));
        }
        text(&format!("{f}.key"), &kv.key, ARG_MAX)?;
        text(
            &format!("{f}.value"),
            &kv.value,
            ARG_MAX - kv.key.len().min(ARG_MAX),
        )?;
        exec_total += kv.key.len() + kv.value.len() + 2;
    }
    if exec_total > EXEC_TOTAL_MAX {
        return Err(bad(
            "config.command",
            format!("command, args and envs take {exec_total} bytes, at most {EXEC_TOTAL_MAX}"),
        ));
    }
    path("config.working_dir", &c.working_dir)?;
    list("config.mounts", &c.mounts, LIST_MAX)?;
    for (i, m) in c.mounts.iter().enumerate() {
        let f = format!("config.mounts[{i}]");
        path(&format!("{f}.container_path"), &m.container_path)?;
        path(&format!("{f}.host_path"), &m.host_path)?;
        path(&format!("{f}.image_sub_path"), &m.image_sub_path)?;
        known::<MountPropagation>(&format!("{f}.propagation"), m.propagation)?;
        list(&format!("{f}.uidMappings"), &m.uid_mappings, LIST_MAX)?;
        list(&format!("{f}.gidMappings"), &m.gid_mappings, LIST_MAX)?;
        if let Some(img) = &m.image {
            line(&format!("{f}.image.image"), &img.image, PATH_MAX)?;
        }
    }
    list("config.devices", &c.devices, LIST_MAX)?;
    for (i, d) in c.devices.iter().enumerate() {
        let f = format!("config.devices[{i}]");
        path(&format!("{f}.container_path"), &d.container_path)?;
        path(&format!("{f}.host_path"), &d.host_path)?;
        if d.permissions.len() > 3 || !d.permissions.chars().all(|c| "rwm".contains(c)) {
            return Err(bad(
                &format!("{f}.permissions"),
                format!("{} is not a subset of \"rwm\"", shown(&d.permissions)),
            ));
        }
    }
    list("config.CDI_devices", &c.cdi_devices, LIST_MAX)?;
    for (i, d) in c.cdi_devices.iter().enumerate() {
        line(&format!("config.CDI_devices[{i}].name"), &d.name, PATH_MAX)?;
    }
    string_map("config.labels", &c.labels, LABEL_VALUE_MAX)?;
    string_map("config.annotations", &c.annotations, MAP_TOTAL_MAX)?;
    if !c.log_path.is_empty() {
        text("config.log_path", &c.log_path, PATH_MAX)?;
    }
    known::<Signal>("config.stop_signal", c.stop_signal)?;
    if let Some(l) = &c.linux {
        resources("config.linux.resources", l.resources.as_ref())?;
        container_security("config.linux.security_context", l.security_context.as_ref())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{
        ContainerMetadata, ImageSpec, KeyValue, LinuxPodSandboxConfig, PodSandboxMetadata,
        PortMapping,
    };

    fn pod() -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: "web".into(),
                uid: "u1".into(),
                namespace: "default".into(),
                attempt: 0,
            }),
            ..Default::default()
        }
    }

    fn pod_err(f: impl FnOnce(&mut PodSandboxConfig)) -> String {
        let mut c = pod();
        f(&mut c);
        let e = pod_sandbox(&c).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
        e.to_string()
    }

    fn with_linux(c: &mut PodSandboxConfig) -> &mut LinuxPodSandboxConfig {
        c.linux.get_or_insert_with(Default::default)
    }

    #[test]
    fn pod_inputs_that_could_wedge_a_pod_are_refused_naming_the_field() {
        pod_sandbox(&pod()).unwrap();
        let e = pod_err(|c| {
            c.port_mappings.push(PortMapping {
                protocol: 99,
                ..Default::default()
            })
        });
        assert!(e.starts_with("config.port_mappings[0].protocol"), "{e}");
        let e = pod_err(|c| c.metadata.as_mut().unwrap().name = "x".repeat(1 << 20));
        assert!(
            e.starts_with("config.metadata.name") && e.len() < 300,
            "{e}"
        );
        let e = pod_err(|c| c.metadata.as_mut().unwrap().namespace = "a;IP=1".into());
        assert!(e.starts_with("config.metadata.namespace"), "{e}");
        let e = pod_err(|c| {
            c.labels.insert("k".into(), "v".repeat(LABEL_VALUE_MAX + 1));
        });
        assert!(e.starts_with("config.labels[\"k\"]"), "{e}");
        let e = pod_err(|c| {
            for i in 0..100 {
                c.annotations.insert(format!("k{i}"), "v".repeat(4000));
            }
        });
        assert!(e.starts_with("config.annotations"), "{e}");
        let e = pod_err(|c| c.log_directory = "/var/log/../../etc".into());
        assert!(e.starts_with("config.log_directory"), "{e}");
        let e = pod_err(|c| c.hostname = "a\nb".into());
        assert!(e.starts_with("config.hostname"), "{e}");
    }

    #[test]
    fn sysctls_must_be_namespaced_and_plain() {
        let set = |k: &str| {
            pod_err(|c| {
                with_linux(c).sysctls.insert(k.into(), "1".into());
            })
        };
        for k in [
            "kernel.panic",
            "vm.swappiness",
            "fs.file-max",
            "kernel.core_pattern",
            "net/ipv4/ip_forward",
            "net.ipv4..x",
            "net.ipv4.conf.../x",
        ] {
            let e = set(k);
            assert!(e.starts_with("config.linux.sysctls["), "{k}: {e}");
        }
        for k in [
            "net.ipv4.ip_forward",
            "kernel.shmmax",
            "kernel.msgmax",
            "kernel.sem",
            "fs.mqueue.msg_max",
            "kernel.hostname",
        ] {
            let mut c = pod();
            with_linux(&mut c).sysctls.insert(k.into(), "1".into());
            pod_sandbox(&c).unwrap_or_else(|e| panic!("{k}: {e}"));
        }
        // Host network: the net sysctls would be the node's.
        let e = pod_err(|c| {
            let l = with_linux(c);
            l.sysctls.insert("net.ipv4.ip_forward".into(), "1".into());
            l.security_context = Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Node as i32,
                    ..Default::default()
                }),
                ..Default::default()
            });
        });
        assert!(e.contains("shares"), "{e}");
    }

    #[test]
    fn seccomp_paths_and_cgroup_parents_are_checked() {
        let sc = |p: SecurityProfile| LinuxSandboxSecurityContext {
            seccomp: Some(p),
            ..Default::default()
        };
        for bad_ref in ["profiles/x.json", "/var/lib/../../etc/shadow"] {
            let e = pod_err(|c| {
                with_linux(c).security_context = Some(sc(SecurityProfile {
                    profile_type: ProfileType::Localhost as i32,
                    localhost_ref: bad_ref.into(),
                }))
            });
            assert!(
                e.starts_with("config.linux.security_context.seccomp.localhost_ref"),
                "{e}"
            );
        }
        let e = pod_err(|c| {
            with_linux(c).security_context = Some(sc(SecurityProfile {
                profile_type: 7,
                localhost_ref: String::new(),
            }))
        });
        assert!(e.contains("profile_type"), "{e}");
        let e = pod_err(|c| with_linux(c).cgroup_parent = "/kubepods/../../system.slice".into());
        assert!(e.starts_with("config.linux.cgroup_parent"), "{e}");
        let mut c = pod();
        with_linux(&mut c).cgroup_parent = "/kubepods/burstable/pod1".into();
        pod_sandbox(&c).unwrap();
    }

    fn container_ok() -> ContainerConfig {
        ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: "app".into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn container_inputs_are_bounded_and_enums_known() {
        container(&container_ok()).unwrap();
        let err = |f: &dyn Fn(&mut ContainerConfig)| {
            let mut c = container_ok();
            f(&mut c);
            container(&c).unwrap_err().to_string()
        };
        let e = err(&|c| c.stop_signal = 999);
        assert!(e.starts_with("config.stop_signal"), "{e}");
        let e = err(&|c| c.args = vec!["a".into(), "x\0y".into()]);
        assert!(e.starts_with("config.args[1]"), "{e}");
        let e = err(&|c| {
            c.envs = vec![KeyValue {
                key: "A=B".into(),
                value: "1".into(),
            }]
        });
        assert!(e.starts_with("config.envs[0].key"), "{e}");
        let e = err(&|c| c.args = vec!["x".repeat(200_000)]);
        assert!(e.starts_with("config.args[0]"), "{e}");
        let e = err(&|c| c.args = (0..20).map(|_| "x".repeat(100_000)).collect());
        assert!(e.starts_with("config.command"), "{e}");
        let e = err(&|c| c.metadata.as_mut().unwrap().name = "n".repeat(300));
        assert!(e.starts_with("config.metadata.name"), "{e}");
        let e = err(&|c| {
            c.linux = Some(Default::default());
            let r = c.linux.as_mut().unwrap();
            r.resources = Some(LinuxContainerResources {
                unified: [("../../cgroup.procs".to_string(), "1".to_string())].into(),
                ..Default::default()
            });
        });
        assert!(e.starts_with("config.linux.resources.unified"), "{e}");
    }
}

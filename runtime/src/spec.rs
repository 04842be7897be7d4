//! Loads and validates an OCI runtime spec before any system call is made.
//!
//! Validation runs twice: on the raw JSON first, for the mistakes serde would only
//! report as "unknown variant" (capability names, namespace and rlimit types), so the
//! error names the exact field; then on the typed spec for everything else.
//! Every error is an [`Error::InvalidSpec`] whose `field` is the JSON path.

use crate::error::{Error, Result};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use serde_json::Value;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A spec that passed validation, with its rootfs resolved to an absolute path.
#[derive(Debug)]
pub struct ValidSpec {
    pub spec: Spec,
    pub rootfs: PathBuf,
}

/// Reads `bundle/config.json` and validates it.
pub fn load_bundle(bundle: &Path) -> Result<ValidSpec> {
    let path = bundle.join("config.json");
    let text = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let raw: Value = serde_json::from_slice(&text)
        .map_err(|e| Error::spec("config.json", format!("not valid json: {e}")))?;
    validate_raw(&raw)?;
    let spec: Spec = serde_json::from_value(raw)
        .map_err(|e| Error::spec("config.json", format!("not an oci runtime spec: {e}")))?;
    let rootfs = validate(&spec, bundle)?;
    Ok(ValidSpec { spec, rootfs })
}

/// Normalises a capability name (`chown`, `CAP_CHOWN`) to the kernel's `CAP_CHOWN`.
pub fn capability_from_name(name: &str) -> Option<caps::Capability> {
    let mut upper = name.to_ascii_uppercase();
    while let Some(rest) = upper.strip_prefix("CAP_") {
        upper = rest.to_string();
    }
    caps::Capability::from_str(&format!("CAP_{upper}")).ok()
}

const CAP_SETS: [&str; 5] = [
    "bounding",
    "effective",
    "inheritable",
    "permitted",
    "ambient",
];
const NS_TYPES: [&str; 10] = [
    "pid", "network", "net", "mount", "mnt", "ipc", "uts", "user", "cgroup", "time",
];

/// Checks the fields whose bad values serde would reject without naming them.
pub fn validate_raw(raw: &Value) -> Result<()> {
    if let Some(caps) = raw.pointer("/process/capabilities") {
        for set in CAP_SETS {
            let Some(list) = caps.get(set).and_then(Value::as_array) else {
                continue;
            };
            for (i, v) in list.iter().enumerate() {
                let field = format!("process.capabilities.{set}[{i}]");
                let name = v
                    .as_str()
                    .ok_or_else(|| Error::spec(&field, "not a string"))?;
                if capability_from_name(name).is_none() {
                    return Err(Error::spec(field, format!("unknown capability {name:?}")));
                }
            }
        }
    }
    if let Some(list) = raw.pointer("/linux/namespaces").and_then(Value::as_array) {
        for (i, ns) in list.iter().enumerate() {
            let t = ns.get("type").and_then(Value::as_str).unwrap_or("");
            if !NS_TYPES.contains(&t) {
                return Err(Error::spec(
                    format!("linux.namespaces[{i}].type"),
                    format!("unknown namespace type {t:?}"),
                ));
            }
        }
    }
    if let Some(list) = raw.pointer("/process/rlimits").and_then(Value::as_array) {
        for (i, rl) in list.iter().enumerate() {
            let t = rl.get("type").and_then(Value::as_str).unwrap_or("");
            if rlimit_resource(t).is_none() {
                return Err(Error::spec(
                    format!("process.rlimits[{i}].type"),
                    format!("unknown rlimit {t:?}"),
                ));
            }
        }
    }
    Ok(())
}

/// Maps `RLIMIT_NOFILE` and friends to the kernel's resource number.
pub fn rlimit_resource(name: &str) -> Option<u32> {
    Some(match name {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        _ => return None,
    })
}

/// The `CLONE_NEW*` flag of a namespace type.
pub fn ns_flag(t: LinuxNamespaceType) -> i32 {
    match t {
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::User => libc::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::Time => 0x80, // CLONE_NEWTIME
    }
}

fn is_sysctl_namespaced(key: &str) -> Option<LinuxNamespaceType> {
    if key.starts_with("net.") {
        Some(LinuxNamespaceType::Network)
    } else if key.starts_with("fs.mqueue.")
        || matches!(
            key,
            "kernel.msgmax"
                | "kernel.msgmnb"
                | "kernel.msgmni"
                | "kernel.sem"
                | "kernel.shmall"
                | "kernel.shmmax"
                | "kernel.shmmni"
                | "kernel.shm_rmid_forced"
        )
    {
        Some(LinuxNamespaceType::Ipc)
    } else if matches!(key, "kernel.hostname" | "kernel.domainname") {
        Some(LinuxNamespaceType::Uts)
    } else {
        None
    }
}

/// Validates a typed spec; returns the absolute rootfs path.
pub fn validate(spec: &Spec, bundle: &Path) -> Result<PathBuf> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| Error::spec("root", "missing"))?;
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };
    if root.path().as_os_str().is_empty() {
        return Err(Error::spec("root.path", "empty"));
    }
    if !rootfs.is_dir() {
        return Err(Error::spec(
            "root.path",
            format!("{} is not a directory", rootfs.display()),
        ));
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::spec("process", "missing"))?;
    validate_process(process, "process")?;

    let linux = spec.linux().clone().unwrap_or_default();
    let mut types = HashSet::new();
    let mut has = HashSet::new();
    for (i, ns) in linux.namespaces().iter().flatten().enumerate() {
        let field = format!("linux.namespaces[{i}]");
        if !types.insert(ns.typ()) {
            return Err(Error::spec(
                format!("{field}.type"),
                format!("namespace {:?} listed twice", ns.typ()),
            ));
        }
        has.insert(ns.typ());
        if ns.typ() == LinuxNamespaceType::Time {
            return Err(Error::Unsupported {
                field: format!("{field}.type"),
                msg: "time namespaces are not implemented".into(),
            });
        }
        if let Some(p) = ns.path() {
            if !p.is_absolute() {
                return Err(Error::spec(
                    format!("{field}.path"),
                    format!("{} is not absolute", p.display()),
                ));
            }
            if !p.exists() {
                return Err(Error::spec(
                    format!("{field}.path"),
                    format!("{} does not exist", p.display()),
                ));
            }
        }
    }
    let new_user = linux
        .namespaces()
        .iter()
        .flatten()
        .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none());
    if new_user && linux.uid_mappings().as_ref().is_none_or(|m| m.is_empty()) {
        return Err(Error::spec(
            "linux.uidMappings",
            "a new user namespace needs uid mappings",
        ));
    }
    if new_user && linux.gid_mappings().as_ref().is_none_or(|m| m.is_empty()) {
        return Err(Error::spec(
            "linux.gidMappings",
            "a new user namespace needs gid mappings",
        ));
    }
    if spec.hostname().as_ref().is_some_and(|h| !h.is_empty())
        && !has.contains(&LinuxNamespaceType::Uts)
    {
        return Err(Error::spec(
            "hostname",
            "setting a hostname needs a uts namespace",
        ));
    }
    if !has.contains(&LinuxNamespaceType::Mount) {
        return Err(Error::spec(
            "linux.namespaces",
            "a mount namespace is required",
        ));
    }
    for (key, _) in linux.sysctl().iter().flatten() {
        let field = format!("linux.sysctl.{key}");
        match is_sysctl_namespaced(key) {
            None => {
                return Err(Error::spec(
                    field,
                    "not a namespaced sysctl; refusing to change the host",
                ))
            }
            Some(t) if !has.contains(&t) => {
                return Err(Error::spec(
                    field,
                    format!("needs a {t:?} namespace in linux.namespaces"),
                ))
            }
            Some(_) => {}
        }
        if key.contains("..") || key.contains('/') {
            return Err(Error::spec(field, "invalid sysctl name"));
        }
    }
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let field = format!("mounts[{i}]");
        if !m.destination().is_absolute() {
            return Err(Error::spec(
                format!("{field}.destination"),
                format!("{} is not absolute", m.destination().display()),
            ));
        }
        let is_bind = m.typ().as_deref() == Some("bind")
            || m.options()
                .iter()
                .flatten()
                .any(|o| o == "bind" || o == "rbind");
        if is_bind {
            match m.source() {
                None => return Err(Error::spec(format!("{field}.source"), "missing")),
                Some(s) if !s.exists() => {
                    return Err(Error::spec(
                        format!("{field}.source"),
                        format!("{} does not exist", s.display()),
                    ))
                }
                Some(_) => {}
            }
        }
        for (j, o) in m.options().iter().flatten().enumerate() {
            if crate::rootfs::mount_option(o).is_none() {
                return Err(Error::spec(
                    format!("{field}.options[{j}]"),
                    format!("unknown mount option {o:?}"),
                ));
            }
        }
    }
    for (i, d) in linux.devices().iter().flatten().enumerate() {
        if !d.path().is_absolute() || !d.path().starts_with("/dev") {
            return Err(Error::spec(
                format!("linux.devices[{i}].path"),
                format!("{} is not under /dev", d.path().display()),
            ));
        }
    }
    for (name, list) in [
        ("linux.maskedPaths", linux.masked_paths()),
        ("linux.readonlyPaths", linux.readonly_paths()),
    ] {
        for (i, p) in list.iter().flatten().enumerate() {
            if !p.starts_with('/') {
                return Err(Error::spec(
                    format!("{name}[{i}]"),
                    format!("{p} is not absolute"),
                ));
            }
        }
    }
    if let Some(p) = linux.rootfs_propagation() {
        if !matches!(
            p.as_str(),
            "" | "private"
                | "rprivate"
                | "slave"
                | "rslave"
                | "shared"
                | "rshared"
                | "unbindable"
                | "runbindable"
        ) {
            return Err(Error::spec(
                "linux.rootfsPropagation",
                format!("unknown propagation {p:?}"),
            ));
        }
    }
    if let Some(label) = linux.mount_label() {
        if !label.is_empty() {
            return Err(Error::Unsupported {
                field: "linux.mountLabel".into(),
                msg: "selinux mount labels are not implemented".into(),
            });
        }
    }
    reject_unimplemented(spec, &linux)?;
    if let Some(cg) = linux.cgroups_path() {
        crate::cgroups::parse_cgroups_path(&cg.to_string_lossy(), "")
            .map_err(|msg| Error::spec("linux.cgroupsPath", msg))?;
    }
    Ok(rootfs)
}

fn unsupported(field: &str, what: &str) -> Error {
    Error::Unsupported {
        field: field.into(),
        msg: format!("{what} not implemented"),
    }
}

/// Fields berth does not implement: refusing them beats silently ignoring them.
fn reject_unimplemented(spec: &Spec, linux: &oci_spec::runtime::Linux) -> Result<()> {
    if let Some(h) = spec.hooks() {
        let any = [
            h.prestart(),
            h.create_runtime(),
            h.create_container(),
            h.start_container(),
            h.poststart(),
            h.poststop(),
        ]
        .iter()
        .any(|l| l.as_ref().is_some_and(|v| !v.is_empty()));
        if any {
            return Err(unsupported("hooks", "oci hooks are"));
        }
    }
    if linux.personality().is_some() {
        return Err(unsupported("linux.personality", "personality is"));
    }
    if linux.intel_rdt().is_some() {
        return Err(unsupported("linux.intelRdt", "intel rdt is"));
    }
    if linux.memory_policy().is_some() {
        return Err(unsupported("linux.memoryPolicy", "numa memory policy is"));
    }
    if linux.time_offsets().as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(unsupported("linux.timeOffsets", "time namespaces are"));
    }
    if linux.net_devices().as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(unsupported("linux.netDevices", "moving net devices is"));
    }
    if let Some(r) = linux.resources() {
        if r.network().is_some() {
            return Err(unsupported(
                "linux.resources.network",
                "net_cls/net_prio limits are",
            ));
        }
        if r.rdma().as_ref().is_some_and(|t| !t.is_empty()) {
            return Err(unsupported("linux.resources.rdma", "rdma limits are"));
        }
        if let Some(m) = r.memory() {
            if m.kernel().is_some() || m.kernel_tcp().is_some() {
                return Err(unsupported(
                    "linux.resources.memory.kernel",
                    "kernel memory limits are",
                ));
            }
        }
    }
    if let Some(p) = spec.process() {
        if p.io_priority().is_some() {
            return Err(unsupported("process.ioPriority", "io priority is"));
        }
        if p.scheduler().is_some() {
            return Err(unsupported("process.scheduler", "scheduler settings are"));
        }
        if p.exec_cpu_affinity().is_some() {
            return Err(unsupported(
                "process.execCPUAffinity",
                "exec cpu affinity is",
            ));
        }
    }
    Ok(())
}

/// Validates a `process` object (the container's or an exec'd one).
pub fn validate_process(p: &oci_spec::runtime::Process, field: &str) -> Result<()> {
    match p.args() {
        Some(a) if !a.is_empty() && !a[0].is_empty() => {}
        _ => return Err(Error::spec(format!("{field}.args"), "empty")),
    }
    if !p.cwd().is_absolute() {
        return Err(Error::spec(
            format!("{field}.cwd"),
            format!("{} is not absolute", p.cwd().display()),
        ));
    }
    for (i, e) in p.env().iter().flatten().enumerate() {
        if !e.contains('=') || e.contains('\0') {
            return Err(Error::spec(
                format!("{field}.env[{i}]"),
                format!("{e:?} is not KEY=VALUE"),
            ));
        }
    }
    if let Some(adj) = p.oom_score_adj() {
        if !(-1000..=1000).contains(&adj) {
            return Err(Error::spec(
                format!("{field}.oomScoreAdj"),
                format!("{adj} is outside -1000..1000"),
            ));
        }
    }
    let mut seen = HashSet::new();
    for (i, rl) in p.rlimits().iter().flatten().enumerate() {
        if !seen.insert(format!("{:?}", rl.typ())) {
            return Err(Error::spec(
                format!("{field}.rlimits[{i}].type"),
                "listed twice",
            ));
        }
        if rl.soft() > rl.hard() {
            return Err(Error::spec(
                format!("{field}.rlimits[{i}]"),
                "soft limit above hard limit",
            ));
        }
    }
    if p.apparmor_profile().as_ref().is_some_and(|a| !a.is_empty())
        && !Path::new("/sys/kernel/security/apparmor").exists()
    {
        return Err(Error::Unsupported {
            field: format!("{field}.apparmorProfile"),
            msg: "apparmor is not enabled on this host".into(),
        });
    }
    if p.selinux_label().as_ref().is_some_and(|a| !a.is_empty())
        && !Path::new("/sys/fs/selinux/enforce").exists()
    {
        return Err(Error::Unsupported {
            field: format!("{field}.selinuxLabel"),
            msg: "selinux is not enabled on this host".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bundle_with(cfg: Value) -> (tempfile::TempDir, Result<ValidSpec>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
        let r = load_bundle(dir.path());
        (dir, r)
    }

    fn base() -> Value {
        json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": {"args": ["/bin/true"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]}
        })
    }

    fn err_of(cfg: Value) -> String {
        match bundle_with(cfg).1 {
            Ok(_) => panic!("spec was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn accepts_minimal_spec_and_resolves_relative_root() {
        let (dir, r) = bundle_with(base());
        assert_eq!(r.unwrap().rootfs, dir.path().join("rootfs"));
    }

    #[test]
    fn names_the_field_of_each_mistake() {
        let mut c = base();
        c["root"] = Value::Null;
        assert_eq!(err_of(c), "root: missing");

        let mut c = base();
        c["root"]["path"] = json!("/nonexistent/rootfs");
        assert!(err_of(c).starts_with("root.path: /nonexistent/rootfs"));

        let mut c = base();
        c["process"]["capabilities"] = json!({"bounding": ["CAP_CHOWN", "CAP_BOGUS"]});
        assert_eq!(
            err_of(c),
            "process.capabilities.bounding[1]: unknown capability \"CAP_BOGUS\""
        );

        let mut c = base();
        c["linux"]["namespaces"] = json!([{"type": "mount"}, {"type": "pid"},
            {"type": "network", "path": "/proc/999999/ns/net"}]);
        assert_eq!(
            err_of(c),
            "linux.namespaces[2].path: /proc/999999/ns/net does not exist"
        );

        let mut c = base();
        c["mounts"] = json!([{"destination": "proc", "type": "proc", "source": "proc"}]);
        assert_eq!(err_of(c), "mounts[0].destination: proc is not absolute");

        let mut c = base();
        c["process"]["args"] = json!([]);
        assert_eq!(err_of(c), "process.args: empty");

        let mut c = base();
        c["hostname"] = json!("x");
        assert_eq!(
            err_of(c),
            "hostname: setting a hostname needs a uts namespace"
        );

        let mut c = base();
        c["linux"]["sysctl"] = json!({"vm.swappiness": "1"});
        assert!(err_of(c).starts_with("linux.sysctl.vm.swappiness: not a namespaced"));

        let mut c = base();
        c["process"]["rlimits"] = json!([{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]);
        assert_eq!(
            err_of(c),
            "process.rlimits[0].type: unknown rlimit \"RLIMIT_BOGUS\""
        );

        let mut c = base();
        c["linux"]["namespaces"] = json!([{"type": "mount"}, {"type": "user"}]);
        assert_eq!(
            err_of(c),
            "linux.uidMappings: a new user namespace needs uid mappings"
        );

        if !Path::new("/sys/kernel/security/apparmor").exists() {
            let mut c = base();
            c["process"]["apparmorProfile"] = json!("berth-default");
            assert_eq!(
                err_of(c),
                "process.apparmorProfile: apparmor is not enabled on this host"
            );
        }

        let mut c = base();
        c["hooks"] = json!({"prestart": [{"path": "/bin/true"}]});
        assert_eq!(err_of(c), "hooks: oci hooks are not implemented");

        let mut c = base();
        c["mounts"] = json!([{"destination": "/x", "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "frobnicate"]}]);
        assert_eq!(
            err_of(c),
            "mounts[0].options[1]: unknown mount option \"frobnicate\""
        );
    }

    #[test]
    fn normalises_capability_names() {
        assert_eq!(
            capability_from_name("chown"),
            Some(caps::Capability::CAP_CHOWN)
        );
        assert_eq!(
            capability_from_name("CAP_SYS_ADMIN"),
            Some(caps::Capability::CAP_SYS_ADMIN)
        );
        assert_eq!(capability_from_name("CAP_NOPE"), None);
    }
}

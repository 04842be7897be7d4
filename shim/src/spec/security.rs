//! Capabilities, masked and read-only `/proc` paths, and the choice of seccomp
//! and AppArmor profiles, from the container's security context.

use std::path::Path;

use berth_proto::v1::{
    security_profile::ProfileType, LinuxContainerSecurityContext, SecurityProfile,
};
use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities, LinuxSeccomp};

use super::seccomp;
use crate::error::{Error, Result};

/// Every capability Linux defines (up to CAP_CHECKPOINT_RESTORE, 6.x kernels),
/// in kernel order (the index is the capability's bit).
pub const ALL_CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// containerd's default capability set for unprivileged containers.
pub fn default_capabilities() -> Vec<&'static str> {
    vec![
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    ]
}

/// containerd's default masked paths.
pub const DEFAULT_MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// containerd's default read-only paths.
pub const DEFAULT_READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The names of the capabilities whose bits are set in `mask` (the kernel's
/// numbering, as in `/proc/<pid>/status`).
pub fn capabilities_in_mask(mask: u64) -> Vec<&'static str> {
    ALL_CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1u64 << bit) != 0)
        .map(|(_, n)| *n)
        .collect()
}

/// What "all capabilities" means here: the ones berthd itself holds (as
/// containerd does), since the kernel refuses to grant a child more. On these
/// hosts that excludes CAP_SYS_RESOURCE.
pub fn current_capabilities() -> Vec<&'static str> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .map(capabilities_in_mask)
        .unwrap_or_else(|| ALL_CAPABILITIES.to_vec())
}

/// A capability name with or without `CAP_`, any case.
pub fn parse_capability(name: &str, field: &str) -> Result<Capability> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    let full = format!("CAP_{bare}");
    if !ALL_CAPABILITIES.contains(&full.as_str()) {
        return Err(Error::InvalidArgument(format!(
            "{field}: unknown capability {name:?}"
        )));
    }
    serde_json::from_value(serde_json::Value::String(full))
        .map_err(|e| Error::Internal(format!("capability {name:?}: {e}")))
}

fn set_of(names: &[&str]) -> Result<Capabilities> {
    names
        .iter()
        .map(|n| parse_capability(n, "capabilities"))
        .collect()
}

fn is_all(name: &str) -> bool {
    name.trim().eq_ignore_ascii_case("ALL")
}

/// The process capability sets. Unprivileged: containerd's defaults, then
/// "ALL" in add, "ALL" in drop, the individual adds, the individual drops
/// (so add ALL + drop CHOWN is everything but CHOWN). Bounding, effective and
/// permitted are that set; inheritable and ambient are the ambient list.
pub fn capabilities(sc: &LinuxContainerSecurityContext) -> Result<LinuxCapabilities> {
    let field = "linux.security_context.capabilities";
    let all = current_capabilities();
    let mut set = if sc.privileged {
        set_of(&all)?
    } else {
        set_of(&default_capabilities())?
    };
    let mut ambient = Capabilities::new();
    if let Some(c) = &sc.capabilities {
        let add = &c.add_capabilities;
        let drop = &c.drop_capabilities;
        if add.iter().any(|n| is_all(n)) {
            set = set_of(&all)?;
        }
        if drop.iter().any(|n| is_all(n)) {
            set.clear();
        }
        for (i, n) in add.iter().enumerate().filter(|(_, n)| !is_all(n)) {
            set.insert(parse_capability(
                n,
                &format!("{field}.add_capabilities[{i}]"),
            )?);
        }
        for (i, n) in drop.iter().enumerate().filter(|(_, n)| !is_all(n)) {
            set.remove(&parse_capability(
                n,
                &format!("{field}.drop_capabilities[{i}]"),
            )?);
        }
        for (i, n) in c.add_ambient_capabilities.iter().enumerate() {
            let cap = parse_capability(n, &format!("{field}.add_ambient_capabilities[{i}]"))?;
            // The kernel only keeps an ambient capability that is also
            // permitted and inheritable.
            set.insert(cap);
            ambient.insert(cap);
        }
    }
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(Some(set.clone()));
    caps.set_effective(Some(set.clone()));
    caps.set_permitted(Some(set));
    caps.set_inheritable(Some(ambient.clone()));
    caps.set_ambient(Some(ambient));
    Ok(caps)
}

/// `linux.maskedPaths` and `linux.readonlyPaths`: none for privileged
/// containers, the request's lists when it sends any, else containerd's.
pub fn masked_and_readonly_paths(
    sc: &LinuxContainerSecurityContext,
    privileged: bool,
) -> (Vec<String>, Vec<String>) {
    if privileged {
        return (Vec::new(), Vec::new());
    }
    let pick = |given: &[String], default: &[&str]| {
        if given.is_empty() {
            default.iter().map(|s| s.to_string()).collect()
        } else {
            given.to_vec()
        }
    };
    (
        pick(&sc.masked_paths, &DEFAULT_MASKED_PATHS),
        pick(&sc.readonly_paths, &DEFAULT_READONLY_PATHS),
    )
}

/// A profile choice after reading both the structured and the deprecated field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Profile {
    /// Nothing asked for, or `unconfined`.
    Unconfined,
    /// The runtime's default profile.
    RuntimeDefault,
    /// A profile on the node (a file path for seccomp, a name for AppArmor).
    Localhost(String),
}

fn profile_of(
    structured: Option<&SecurityProfile>,
    deprecated: &str,
    field: &str,
    deprecated_field: &str,
) -> Result<Profile> {
    if let Some(p) = structured {
        let typ = ProfileType::try_from(p.profile_type).map_err(|_| {
            Error::InvalidArgument(format!(
                "{field}.profile_type: unknown value {}",
                p.profile_type
            ))
        })?;
        return Ok(match typ {
            ProfileType::RuntimeDefault => Profile::RuntimeDefault,
            ProfileType::Unconfined => Profile::Unconfined,
            ProfileType::Localhost if p.localhost_ref.is_empty() => {
                return Err(Error::InvalidArgument(format!(
                    "{field}.localhost_ref: empty for a Localhost profile"
                )))
            }
            ProfileType::Localhost => Profile::Localhost(p.localhost_ref.clone()),
        });
    }
    match deprecated {
        "" | "unconfined" => Ok(Profile::Unconfined),
        "runtime/default" | "docker/default" => Ok(Profile::RuntimeDefault),
        s => match s.strip_prefix("localhost/") {
            Some(r) if !r.is_empty() => Ok(Profile::Localhost(r.to_string())),
            _ => Err(Error::InvalidArgument(format!(
                "{deprecated_field}: unknown profile {s:?}"
            ))),
        },
    }
}

/// The seccomp profile the context asks for.
#[allow(deprecated)] // older kubelets still send only the string form
pub fn seccomp_profile(sc: &LinuxContainerSecurityContext) -> Result<Profile> {
    profile_of(
        sc.seccomp.as_ref(),
        &sc.seccomp_profile_path,
        "linux.security_context.seccomp",
        "linux.security_context.seccomp_profile_path",
    )
}

/// Reads a seccomp profile (OCI or Docker format) from the node, resolving
/// Docker's per-rule conditions for a container holding `caps`.
pub fn load_seccomp(path: &str, field: &str, caps: &Capabilities) -> Result<LinuxSeccomp> {
    if !path.starts_with('/') {
        return Err(Error::InvalidArgument(format!(
            "{field}: seccomp profile {path:?} is not an absolute path"
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| {
        Error::InvalidArgument(format!("{field}: read seccomp profile {path:?}: {e}"))
    })?;
    let bad =
        |e: String| Error::InvalidArgument(format!("{field}: bad seccomp profile {path:?}: {e}"));
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    seccomp::from_profile_json(v, std::env::consts::ARCH, caps, seccomp::running_kernel())
        .map_err(bad)
}

/// `linux.seccomp`: none when privileged or unconfined, the built-in profile
/// (tuned to the container's capabilities) for RuntimeDefault, the node file
/// for Localhost.
pub fn seccomp(
    sc: &LinuxContainerSecurityContext,
    privileged: bool,
    caps: &Capabilities,
) -> Result<Option<LinuxSeccomp>> {
    let profile = seccomp_profile(sc)?;
    if privileged {
        return Ok(None);
    }
    Ok(match profile {
        Profile::Unconfined => None,
        Profile::RuntimeDefault => Some(seccomp::profile_for(std::env::consts::ARCH, caps)),
        Profile::Localhost(path) => {
            let field = if sc.seccomp.is_some() {
                "linux.security_context.seccomp.localhost_ref"
            } else {
                "linux.security_context.seccomp_profile_path"
            };
            Some(load_seccomp(&path, field, caps)?)
        }
    })
}

/// Whether the kernel has AppArmor switched on.
pub fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim_start().starts_with('Y'))
}

/// `process.apparmorProfile` given whether AppArmor is enabled on the node.
pub fn apparmor_profile_with(
    sc: &LinuxContainerSecurityContext,
    privileged: bool,
    enabled: bool,
) -> Result<Option<String>> {
    let field = "linux.security_context.apparmor";
    #[allow(deprecated)] // older kubelets still send only the string form
    let profile = profile_of(
        sc.apparmor.as_ref(),
        &sc.apparmor_profile,
        field,
        "linux.security_context.apparmor_profile",
    )?;
    match profile {
        Profile::Unconfined => Ok(None),
        // Privileged containers run unconfined unless a profile is named.
        Profile::RuntimeDefault if privileged => Ok(None),
        _ if !enabled => Err(Error::InvalidArgument(format!(
            "{field}: apparmor is not enabled on this node"
        ))),
        Profile::RuntimeDefault => Err(Error::Unimplemented(format!(
            "{field}: berth loads no default apparmor profile; name a localhost profile"
        ))),
        Profile::Localhost(name) => Ok(Some(name)),
    }
}

/// `process.apparmorProfile` on this node.
pub fn apparmor_profile(
    sc: &LinuxContainerSecurityContext,
    privileged: bool,
) -> Result<Option<String>> {
    apparmor_profile_with(sc, privileged, apparmor_enabled())
}

/// SELinux options only matter on SELinux nodes, where berth cannot label yet.
pub fn check_selinux(sc: &LinuxContainerSecurityContext) -> Result<()> {
    let asked = sc.selinux_options.as_ref().is_some_and(|o| {
        !(o.user.is_empty() && o.role.is_empty() && o.r#type.is_empty() && o.level.is_empty())
    });
    if asked && Path::new("/sys/fs/selinux/enforce").exists() {
        return Err(Error::Unimplemented(
            "linux.security_context.selinux_options: selinux labelling is not supported".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(deprecated)] // the string forms are still part of the API
mod tests {
    use super::*;
    use berth_proto::v1::Capability as CriCaps;

    fn names(set: &Option<Capabilities>) -> Vec<String> {
        let mut v: Vec<String> = set
            .iter()
            .flatten()
            .map(|c| {
                serde_json::to_value(c)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        v.sort();
        v
    }

    fn sorted(v: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    }

    fn with_caps(add: &[&str], drop: &[&str], ambient: &[&str]) -> LinuxContainerSecurityContext {
        LinuxContainerSecurityContext {
            capabilities: Some(CriCaps {
                add_capabilities: add.iter().map(|s| s.to_string()).collect(),
                drop_capabilities: drop.iter().map(|s| s.to_string()).collect(),
                add_ambient_capabilities: ambient.iter().map(|s| s.to_string()).collect(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn default_set_is_containerds() {
        let caps = capabilities(&LinuxContainerSecurityContext::default()).unwrap();
        assert_eq!(names(caps.bounding()), sorted(&default_capabilities()));
        assert_eq!(names(caps.effective()), names(caps.permitted()));
        assert!(names(caps.inheritable()).is_empty() && names(caps.ambient()).is_empty());
        assert!(!names(caps.bounding()).contains(&"CAP_SYS_ADMIN".to_string()));
    }

    #[test]
    fn add_and_drop() {
        let mut want = default_capabilities();
        want.retain(|c| *c != "CAP_CHOWN" && *c != "CAP_NET_RAW");
        want.push("CAP_SYS_ADMIN");
        want.push("CAP_NET_ADMIN");
        let caps = capabilities(&with_caps(
            &["SYS_ADMIN", "cap_net_admin"],
            &["CHOWN", "CAP_NET_RAW"],
            &[],
        ))
        .unwrap();
        assert_eq!(names(caps.bounding()), sorted(&want));

        let caps = capabilities(&with_caps(&["ALL"], &["CHOWN"], &[])).unwrap();
        let mut all: Vec<&str> = current_capabilities();
        all.retain(|c| *c != "CAP_CHOWN");
        assert_eq!(names(caps.effective()), sorted(&all));

        let caps = capabilities(&with_caps(&["NET_BIND_SERVICE"], &["all"], &[])).unwrap();
        assert_eq!(names(caps.permitted()), sorted(&["CAP_NET_BIND_SERVICE"]));

        let caps = capabilities(&with_caps(&[], &["ALL"], &["NET_BIND_SERVICE"])).unwrap();
        assert_eq!(names(caps.ambient()), sorted(&["CAP_NET_BIND_SERVICE"]));
        assert_eq!(names(caps.inheritable()), sorted(&["CAP_NET_BIND_SERVICE"]));
        assert_eq!(names(caps.permitted()), sorted(&["CAP_NET_BIND_SERVICE"]));
    }

    #[test]
    fn all_means_what_we_hold() {
        assert_eq!(capabilities_in_mask(0), Vec::<&str>::new());
        assert_eq!(capabilities_in_mask(1), ["CAP_CHOWN"]);
        // Docker's and containerd's default set, as the kernel prints it.
        let mut want = default_capabilities();
        want.sort();
        let mut got = capabilities_in_mask(0xa80425fb);
        got.sort();
        assert_eq!(got, want);
        // Bits the table does not know are ignored.
        assert_eq!(capabilities_in_mask(u64::MAX).len(), ALL_CAPABILITIES.len());
        assert_eq!(capabilities_in_mask(1 << 40), ["CAP_CHECKPOINT_RESTORE"]);
        // berthd runs as root here: at least the default set is held.
        let current = current_capabilities();
        assert!(
            default_capabilities().iter().all(|c| current.contains(c)),
            "{current:?}"
        );
    }

    #[test]
    fn unknown_capability_is_named() {
        for (sc, field) in [
            (
                with_caps(&["CHOWN", "FLY"], &[], &[]),
                "add_capabilities[1]",
            ),
            (with_caps(&[], &["CAP_NOPE"], &[]), "drop_capabilities[0]"),
            (with_caps(&[], &[], &["X"]), "add_ambient_capabilities[0]"),
        ] {
            let err = capabilities(&sc).unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)));
            assert!(err.to_string().contains(field), "{field}: {err}");
        }
        assert!(capabilities(&with_caps(&["FLY"], &[], &[]))
            .unwrap_err()
            .to_string()
            .contains("\"FLY\""));
    }

    #[test]
    fn privileged_has_everything_and_no_masks() {
        let sc = LinuxContainerSecurityContext {
            privileged: true,
            ..Default::default()
        };
        let caps = capabilities(&sc).unwrap();
        assert_eq!(names(caps.bounding()), sorted(&current_capabilities()));
        assert!(names(caps.inheritable()).is_empty());
        assert_eq!(masked_and_readonly_paths(&sc, true), (vec![], vec![]));
        let sc = LinuxContainerSecurityContext {
            privileged: true,
            seccomp: Some(SecurityProfile {
                profile_type: ProfileType::RuntimeDefault as i32,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(seccomp(&sc, true, &Capabilities::new()).unwrap().is_none());
    }

    #[test]
    fn masked_paths_default_or_given() {
        let sc = LinuxContainerSecurityContext::default();
        let (m, r) = masked_and_readonly_paths(&sc, false);
        assert!(m.contains(&"/proc/kcore".to_string()));
        assert!(r.contains(&"/proc/sys".to_string()));
        let sc = LinuxContainerSecurityContext {
            masked_paths: vec!["/proc/foo".into()],
            readonly_paths: vec!["/proc/bar".into()],
            ..Default::default()
        };
        assert_eq!(
            masked_and_readonly_paths(&sc, false),
            (vec!["/proc/foo".to_string()], vec!["/proc/bar".to_string()])
        );
    }

    fn sc_seccomp(typ: ProfileType, r: &str) -> LinuxContainerSecurityContext {
        LinuxContainerSecurityContext {
            seccomp: Some(SecurityProfile {
                profile_type: typ as i32,
                localhost_ref: r.into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn seccomp_profiles() {
        let caps = Capabilities::new();
        let got = seccomp(&sc_seccomp(ProfileType::RuntimeDefault, ""), false, &caps)
            .unwrap()
            .unwrap();
        assert_eq!(got, seccomp::profile_for(std::env::consts::ARCH, &caps));
        assert!(
            seccomp(&sc_seccomp(ProfileType::Unconfined, ""), false, &caps)
                .unwrap()
                .is_none()
        );
        assert!(
            seccomp(&LinuxContainerSecurityContext::default(), false, &caps)
                .unwrap()
                .is_none()
        );

        let err = seccomp(
            &sc_seccomp(ProfileType::Localhost, "/nonexistent/profile.json"),
            false,
            &caps,
        )
        .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)));
        assert!(
            err.to_string().contains("localhost_ref")
                && err.to_string().contains("/nonexistent/profile.json"),
            "{err}"
        );
        let err = seccomp(&sc_seccomp(ProfileType::Localhost, ""), false, &caps).unwrap_err();
        assert!(err.to_string().contains("localhost_ref"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("p.json");
        std::fs::write(&good, r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}"#).unwrap();
        let got = seccomp(
            &sc_seccomp(ProfileType::Localhost, good.to_str().unwrap()),
            false,
            &caps,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            got.syscalls().as_ref().unwrap()[0].names(),
            &["read".to_string()]
        );
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{not json").unwrap();
        let err = seccomp(
            &sc_seccomp(ProfileType::Localhost, bad.to_str().unwrap()),
            false,
            &caps,
        )
        .unwrap_err();
        assert!(err.to_string().contains("bad seccomp profile"), "{err}");

        // The deprecated string form.
        let dep = |s: &str| LinuxContainerSecurityContext {
            seccomp_profile_path: s.into(),
            ..Default::default()
        };
        assert!(seccomp(&dep("runtime/default"), false, &caps)
            .unwrap()
            .is_some());
        assert!(seccomp(&dep("unconfined"), false, &caps).unwrap().is_none());
        let got = seccomp(&dep(&format!("localhost/{}", good.display())), false, &caps).unwrap();
        assert!(got.is_some());
        let err = seccomp(&dep("localhost//missing.json"), false, &caps).unwrap_err();
        assert!(err.to_string().contains("seccomp_profile_path"), "{err}");
        assert!(seccomp(&dep("bogus"), false, &caps)
            .unwrap_err()
            .to_string()
            .contains("seccomp_profile_path"));
    }

    #[test]
    fn apparmor_needs_an_enabled_kernel() {
        let runtime_default = LinuxContainerSecurityContext {
            apparmor: Some(SecurityProfile {
                profile_type: ProfileType::RuntimeDefault as i32,
                ..Default::default()
            }),
            ..Default::default()
        };
        let err = apparmor_profile_with(&runtime_default, false, false).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)));
        assert!(err.to_string().contains("apparmor"), "{err}");
        assert_eq!(
            apparmor_profile_with(&runtime_default, true, false).unwrap(),
            None
        );
        assert_eq!(
            apparmor_profile_with(&LinuxContainerSecurityContext::default(), false, false).unwrap(),
            None
        );
        let local = LinuxContainerSecurityContext {
            apparmor_profile: "localhost/my-prof".into(),
            ..Default::default()
        };
        assert_eq!(
            apparmor_profile_with(&local, false, true)
                .unwrap()
                .as_deref(),
            Some("my-prof")
        );
        apparmor_profile_with(&local, false, false).unwrap_err();
        let unconfined = LinuxContainerSecurityContext {
            apparmor_profile: "unconfined".into(),
            ..Default::default()
        };
        assert_eq!(
            apparmor_profile_with(&unconfined, false, false).unwrap(),
            None
        );
    }
}

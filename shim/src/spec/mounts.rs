//! The container's mounts (containerd's defaults, the pod's files, the
//! request's mounts) and device nodes with their cgroup rules.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use berth_proto::v1::{Device, Mount as CriMount, MountPropagation};
use oci_spec::runtime::{
    LinuxDevice, LinuxDeviceBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType,
    Mount,
};

use super::namespaces::Modes;
use super::PodFiles;
use crate::error::{Error, Result};

fn mount(dest: &str, typ: &str, source: impl Into<PathBuf>, opts: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(dest));
    m.set_typ(Some(typ.to_string()));
    m.set_source(Some(source.into()));
    m.set_options(Some(opts.iter().map(|s| s.to_string()).collect()));
    m
}

fn bind(dest: &str, source: &Path, opts: &[&str]) -> Mount {
    let mut all = vec!["rbind"];
    all.extend_from_slice(opts);
    mount(dest, "bind", source, &all)
}

/// containerd's default mounts. `/sys` and the cgroup mount are read-only
/// unless privileged; `/dev/shm` is the pod's (or the host's with host IPC),
/// else a private 64 MiB tmpfs.
pub fn default_mounts(privileged: bool, modes: &Modes, pod: &PodFiles) -> Vec<Mount> {
    let ro: &[&str] = if privileged { &[] } else { &["ro"] };
    let mut sys = vec!["nosuid", "noexec", "nodev"];
    sys.extend_from_slice(ro);
    let mut cgroup = vec!["nosuid", "noexec", "nodev", "relatime"];
    cgroup.extend_from_slice(ro);
    let shm = if modes.host_ipc() {
        bind("/dev/shm", Path::new("/dev/shm"), &["rprivate", "rw"])
    } else if let Some(p) = &pod.shm {
        bind("/dev/shm", p, &["rprivate", "rw"])
    } else {
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )
    };
    vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        shm,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount("/sys", "sysfs", "sysfs", &sys),
        mount("/sys/fs/cgroup", "cgroup", "cgroup", &cgroup),
    ]
}

/// `/etc/hostname`, `/etc/hosts`, `/etc/resolv.conf` from the pod; read-only
/// when the rootfs is.
pub fn pod_file_mounts(pod: &PodFiles, readonly_rootfs: bool) -> Vec<Mount> {
    let mode = if readonly_rootfs { "ro" } else { "rw" };
    [
        ("/etc/hostname", &pod.hostname),
        ("/etc/hosts", &pod.hosts),
        ("/etc/resolv.conf", &pod.resolv_conf),
    ]
    .into_iter()
    .filter_map(|(dest, src)| src.as_ref().map(|s| bind(dest, s, &["rprivate", mode])))
    .collect()
}

/// Lexically cleaned absolute path, for comparing destinations.
fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// The request's mounts as OCI bind mounts, in the order they must be mounted
/// (parents first), and the rootfs propagation they need (`rshared` for a
/// bidirectional mount, `rslave` for host-to-container).
pub fn cri_mounts(mounts: &[CriMount]) -> Result<(Vec<Mount>, Option<String>)> {
    let mut out = Vec::with_capacity(mounts.len());
    let mut rootfs_propagation: Option<&str> = None;
    for (i, m) in mounts.iter().enumerate() {
        let field = |f: &str| format!("mounts[{i}].{f}");
        if m.image.as_ref().is_some_and(|s| !s.image.is_empty()) {
            // CreateContainer takes image volumes out first (spec::image_volume).
            return Err(Error::Internal(format!(
                "{}: an image volume reached the bind-mount list",
                field("image")
            )));
        }
        let idmap = super::userns::mount_option(i, m)?;
        if !m.container_path.starts_with('/') {
            return Err(Error::InvalidArgument(format!(
                "{}: {:?} is not an absolute path",
                field("container_path"),
                m.container_path
            )));
        }
        if !m.host_path.starts_with('/') {
            return Err(Error::InvalidArgument(format!(
                "{}: {:?} is not an absolute path",
                field("host_path"),
                m.host_path
            )));
        }
        if let Err(e) = std::fs::metadata(&m.host_path) {
            return Err(Error::InvalidArgument(format!(
                "{}: {:?}: {e}",
                field("host_path"),
                m.host_path
            )));
        }
        let propagation = MountPropagation::try_from(m.propagation).map_err(|_| {
            Error::InvalidArgument(format!(
                "{}: unknown propagation {}",
                field("propagation"),
                m.propagation
            ))
        })?;
        let prop = match propagation {
            MountPropagation::PropagationPrivate => "rprivate",
            MountPropagation::PropagationHostToContainer => {
                rootfs_propagation.get_or_insert("rslave");
                "rslave"
            }
            MountPropagation::PropagationBidirectional => {
                rootfs_propagation = Some("rshared");
                "rshared"
            }
        };
        // Recursive read-only (the kubelet's `recursiveReadOnly`): the CRI
        // allows it only on a read-only, private mount, and a runtime must
        // refuse what it cannot do rather than mount it writable below.
        if m.recursive_read_only && !m.readonly {
            return Err(Error::InvalidArgument(format!(
                "{}: needs readonly to be true",
                field("recursive_read_only")
            )));
        }
        if m.recursive_read_only && propagation != MountPropagation::PropagationPrivate {
            return Err(Error::InvalidArgument(format!(
                "{}: needs propagation PROPAGATION_PRIVATE, not {}",
                field("recursive_read_only"),
                propagation.as_str_name()
            )));
        }
        let ro = match (m.readonly, m.recursive_read_only) {
            (_, true) => "rro",
            (true, false) => "ro",
            (false, false) => "rw",
        };
        let mut opts = vec![prop, ro];
        opts.extend(idmap.as_deref());
        let dest = clean(Path::new(&m.container_path));
        out.push(bind(
            &dest.to_string_lossy(),
            Path::new(&m.host_path),
            &opts,
        ));
    }
    // Parents before children, otherwise a later parent mount hides a child.
    out.sort_by_key(|m| m.destination().components().count());
    Ok((out, rootfs_propagation.map(String::from)))
}

/// Refuses a bidirectional mount whose host path is not on a shared mount of
/// berthd's mount namespace (the one every container's is copied from): the
/// container's mounts could never reach the host, so the request cannot do
/// what it asks (containerd refuses it the same way). Host-to-container on a
/// private mount is accepted; it then just sees no later host mounts.
pub fn check_host_propagation(mounts: &[CriMount]) -> Result<()> {
    for (i, m) in mounts.iter().enumerate() {
        if m.propagation != MountPropagation::PropagationBidirectional as i32 {
            continue;
        }
        let holder = berth_runtime::rootfs::mount_of(Path::new(&m.host_path));
        if !holder.shared {
            return Err(Error::FailedPrecondition(format!(
                "mounts[{i}].propagation: bidirectional needs host_path {:?} on a shared \
                 mount, but {} is not shared (mount --make-shared)",
                m.host_path,
                holder.point.display()
            )));
        }
    }
    Ok(())
}

/// Default and pod mounts, minus those a request mount replaces (kubelet mounts
/// its own `/etc/hosts`, for example), then the request's mounts.
pub fn merge(defaults: Vec<Mount>, cri: Vec<Mount>) -> Vec<Mount> {
    let taken: Vec<PathBuf> = cri.iter().map(|m| clean(m.destination())).collect();
    let mut out: Vec<Mount> = defaults
        .into_iter()
        .filter(|m| !taken.contains(&clean(m.destination())))
        .collect();
    out.extend(cri);
    out
}

/// Device nodes and the device-cgroup rules that go with them.
#[derive(Debug, Default)]
pub struct Devices {
    /// `linux.devices`.
    pub devices: Vec<LinuxDevice>,
    /// `linux.resources.devices`.
    pub cgroup_rules: Vec<LinuxDeviceCgroup>,
}

fn rule(
    allow: bool,
    typ: Option<LinuxDeviceType>,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> Result<LinuxDeviceCgroup> {
    let mut b = LinuxDeviceCgroupBuilder::default()
        .allow(allow)
        .access(access);
    if let Some(t) = typ {
        b = b.typ(t);
    }
    if let Some(m) = major {
        b = b.major(m);
    }
    if let Some(m) = minor {
        b = b.minor(m);
    }
    b.build()
        .map_err(|e| Error::Internal(format!("build oci device rule: {e}")))
}

/// containerd's default device-cgroup rules: deny all, allow mknod of any
/// node, and read/write/mknod of the standard character devices.
pub fn default_device_rules() -> Result<Vec<LinuxDeviceCgroup>> {
    use LinuxDeviceType::{B, C};
    let mut rules = vec![
        rule(false, None, None, None, "rwm")?,
        rule(true, Some(C), None, None, "m")?,
        rule(true, Some(B), None, None, "m")?,
    ];
    // null, zero, full, random, urandom, tty, console, ptmx, /dev/pts/*, tun.
    for (major, minor) in [
        (1, Some(3)),
        (1, Some(5)),
        (1, Some(7)),
        (1, Some(8)),
        (1, Some(9)),
        (5, Some(0)),
        (5, Some(1)),
        (5, Some(2)),
        (136, None),
        (10, Some(200)),
    ] {
        rules.push(rule(true, Some(C), Some(major), minor, "rwm")?);
    }
    Ok(rules)
}

fn dev_major(rdev: u64) -> i64 {
    // At most 32 bits each: fits an i64.
    i64::try_from(((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0x0000_0fff)).unwrap_or(0)
}

fn dev_minor(rdev: u64) -> i64 {
    i64::try_from(((rdev >> 12) & 0xffff_ff00) | (rdev & 0x0000_00ff)).unwrap_or(0)
}

/// A host device node as an OCI device at `container_path`, or `None` when the
/// host path is not a device node.
fn host_device(host: &Path, container_path: &Path) -> std::io::Result<Option<LinuxDevice>> {
    let meta = std::fs::metadata(host)?;
    let ft = meta.file_type();
    let typ = if ft.is_char_device() {
        LinuxDeviceType::C
    } else if ft.is_block_device() {
        LinuxDeviceType::B
    } else {
        return Ok(None);
    };
    LinuxDeviceBuilder::default()
        .path(container_path)
        .typ(typ)
        .major(dev_major(meta.rdev()))
        .minor(dev_minor(meta.rdev()))
        .file_mode(meta.mode() & 0o7777)
        .uid(meta.uid())
        .gid(meta.gid())
        .build()
        .map(Some)
        .map_err(|e| std::io::Error::other(e.to_string()))
}

/// Every device node under the host's `/dev` except the per-container
/// pseudo-filesystems, for privileged containers (as containerd's
/// WithHostDevices does).
pub fn host_devices(dev: &Path) -> Vec<LinuxDevice> {
    const SKIP: [&str; 5] = ["pts", "shm", "mqueue", "fd", "console"];
    let mut out = Vec::new();
    let mut todo = vec![dev.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if dir == dev && SKIP.iter().any(|s| e.file_name() == *s) {
                continue;
            }
            if ft.is_dir() {
                todo.push(path);
            } else if ft.is_char_device() || ft.is_block_device() {
                let Ok(rel) = path.strip_prefix(dev) else {
                    continue;
                };
                let dest = Path::new("/dev").join(rel);
                if let Ok(Some(d)) = host_device(&path, &dest) {
                    out.push(d);
                }
            }
        }
    }
    out.sort_by(|a, b| a.path().cmp(b.path()));
    out
}

/// The request's devices plus the default rules; privileged containers get
/// every host device and an allow-all rule.
pub fn devices(requested: &[Device], privileged: bool) -> Result<Devices> {
    let mut out = Devices {
        devices: Vec::new(),
        cgroup_rules: if privileged {
            vec![rule(true, None, None, None, "rwm")?]
        } else {
            default_device_rules()?
        },
    };
    if privileged {
        out.devices = host_devices(Path::new("/dev"));
    }
    for (i, d) in requested.iter().enumerate() {
        let field = |f: &str| format!("devices[{i}].{f}");
        let perms = if d.permissions.is_empty() {
            "rwm"
        } else {
            d.permissions.as_str()
        };
        if !perms.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
            return Err(Error::InvalidArgument(format!(
                "{}: {perms:?} is not a combination of r, w and m",
                field("permissions")
            )));
        }
        if !d.container_path.starts_with('/') {
            return Err(Error::InvalidArgument(format!(
                "{}: {:?} is not an absolute path",
                field("container_path"),
                d.container_path
            )));
        }
        let dev = host_device(
            Path::new(&d.host_path),
            &clean(Path::new(&d.container_path)),
        )
        .map_err(|e| {
            Error::InvalidArgument(format!("{}: {:?}: {e}", field("host_path"), d.host_path))
        })?
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{}: {:?} is not a device node",
                field("host_path"),
                d.host_path
            ))
        })?;
        out.cgroup_rules.push(rule(
            true,
            Some(dev.typ()),
            Some(dev.major()),
            Some(dev.minor()),
            perms,
        )?);
        out.devices.retain(|x| x.path() != dev.path());
        out.devices.push(dev);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::NamespaceMode;

    fn modes(ipc: NamespaceMode) -> Modes {
        Modes {
            network: NamespaceMode::Pod,
            pid: NamespaceMode::Container,
            ipc,
            target_id: String::new(),
        }
    }

    fn find<'a>(ms: &'a [Mount], dest: &str) -> &'a Mount {
        ms.iter()
            .find(|m| m.destination() == Path::new(dest))
            .unwrap_or_else(|| panic!("no mount at {dest}"))
    }

    fn opts(m: &Mount) -> Vec<String> {
        m.options().clone().unwrap_or_default()
    }

    #[test]
    fn defaults_follow_privilege_and_ipc() {
        let ms = default_mounts(false, &modes(NamespaceMode::Pod), &PodFiles::default());
        let dests: Vec<_> = ms
            .iter()
            .map(|m| m.destination().display().to_string())
            .collect();
        assert_eq!(
            dests,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/shm",
                "/dev/mqueue",
                "/sys",
                "/sys/fs/cgroup"
            ]
        );
        assert!(opts(find(&ms, "/sys")).contains(&"ro".into()));
        assert!(opts(find(&ms, "/sys/fs/cgroup")).contains(&"ro".into()));
        assert_eq!(find(&ms, "/dev/shm").typ().as_deref(), Some("tmpfs"));
        assert!(opts(find(&ms, "/dev/shm")).contains(&"size=65536k".into()));

        let ms = default_mounts(true, &modes(NamespaceMode::Node), &PodFiles::default());
        assert!(!opts(find(&ms, "/sys")).contains(&"ro".into()));
        assert!(!opts(find(&ms, "/sys/fs/cgroup")).contains(&"ro".into()));
        let shm = find(&ms, "/dev/shm");
        assert_eq!(shm.source().as_deref(), Some(Path::new("/dev/shm")));

        let pod = PodFiles {
            shm: Some("/run/berth/pods/p/shm".into()),
            ..Default::default()
        };
        let ms = default_mounts(false, &modes(NamespaceMode::Pod), &pod);
        let shm = find(&ms, "/dev/shm");
        assert_eq!(shm.typ().as_deref(), Some("bind"));
        assert_eq!(
            shm.source().as_deref(),
            Some(Path::new("/run/berth/pods/p/shm"))
        );
    }

    #[test]
    fn pod_files_are_bound_read_only_with_a_read_only_rootfs() {
        let pod = PodFiles {
            hostname: Some("/p/hostname".into()),
            hosts: Some("/p/hosts".into()),
            resolv_conf: None,
            shm: None,
        };
        let ms = pod_file_mounts(&pod, true);
        assert_eq!(ms.len(), 2);
        assert_eq!(
            find(&ms, "/etc/hosts").source().as_deref(),
            Some(Path::new("/p/hosts"))
        );
        assert_eq!(
            opts(find(&ms, "/etc/hostname")),
            ["rbind", "rprivate", "ro"]
        );
        let ms = pod_file_mounts(&pod, false);
        assert_eq!(opts(find(&ms, "/etc/hosts")), ["rbind", "rprivate", "rw"]);
    }

    fn cri(container: &str, host: &str, readonly: bool, prop: MountPropagation) -> CriMount {
        CriMount {
            container_path: container.into(),
            host_path: host.into(),
            readonly,
            propagation: prop as i32,
            ..Default::default()
        }
    }

    #[test]
    fn cri_mounts_map_readonly_and_propagation() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().to_str().unwrap();
        use MountPropagation as P;
        let cases = [
            (
                false,
                P::PropagationPrivate,
                vec!["rbind", "rprivate", "rw"],
                None,
            ),
            (
                true,
                P::PropagationPrivate,
                vec!["rbind", "rprivate", "ro"],
                None,
            ),
            (
                false,
                P::PropagationHostToContainer,
                vec!["rbind", "rslave", "rw"],
                Some("rslave"),
            ),
            (
                true,
                P::PropagationBidirectional,
                vec!["rbind", "rshared", "ro"],
                Some("rshared"),
            ),
        ];
        for (ro, prop, want, want_root) in cases {
            let (ms, rootprop) = cri_mounts(&[cri("/data", host, ro, prop)]).unwrap();
            assert_eq!(opts(&ms[0]), want, "{ro} {prop:?}");
            assert_eq!(ms[0].typ().as_deref(), Some("bind"));
            assert_eq!(ms[0].source().as_deref(), Some(dir.path()));
            assert_eq!(rootprop.as_deref(), want_root, "{prop:?}");
        }
        // Bidirectional wins over host-to-container whatever the order.
        let (_, rootprop) = cri_mounts(&[
            cri("/a", host, false, P::PropagationBidirectional),
            cri("/b", host, false, P::PropagationHostToContainer),
        ])
        .unwrap();
        assert_eq!(rootprop.as_deref(), Some("rshared"));
    }

    /// `recursive_read_only` becomes the `rro` option, and is refused
    /// unless the mount is read-only and private, as the CRI says.
    #[test]
    fn recursive_read_only_needs_a_read_only_private_mount() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().to_str().unwrap();
        let rro = |readonly, prop| CriMount {
            recursive_read_only: true,
            ..cri("/data", host, readonly, prop)
        };
        let (ms, _) = cri_mounts(&[rro(true, MountPropagation::PropagationPrivate)]).unwrap();
        assert_eq!(opts(&ms[0]), vec!["rbind", "rprivate", "rro"]);
        let cases = [
            (
                rro(false, MountPropagation::PropagationPrivate),
                "needs readonly",
            ),
            (
                rro(true, MountPropagation::PropagationHostToContainer),
                "PROPAGATION_HOST_TO_CONTAINER",
            ),
        ];
        for (m, want) in cases {
            let err = cri_mounts(&[m]).unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
            let msg = err.to_string();
            assert!(
                msg.contains("mounts[0].recursive_read_only") && msg.contains(want),
                "{msg}"
            );
        }
    }

    #[test]
    fn cri_mount_errors_name_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().to_str().unwrap();
        let p = MountPropagation::PropagationPrivate;
        let cases = [
            (
                cri("/ok", host, false, p),
                cri("rel", host, false, p),
                "mounts[1].container_path",
            ),
            (
                cri("/ok", host, false, p),
                cri("/x", "relative/dir", false, p),
                "mounts[1].host_path",
            ),
            (
                cri("/ok", "/nonexistent/berth/spec", false, p),
                cri("/x", host, false, p),
                "mounts[0].host_path",
            ),
        ];
        for (a, b, want) in cases {
            let err = cri_mounts(&[a, b]).unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
            assert!(err.to_string().contains(want), "{want}: {err}");
        }
        let mut bad = cri("/x", host, false, p);
        bad.propagation = 9;
        assert!(cri_mounts(&[bad])
            .unwrap_err()
            .to_string()
            .contains("mounts[0].propagation"));
    }

    #[test]
    fn cri_mounts_sort_parents_first_and_replace_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().to_str().unwrap();
        let p = MountPropagation::PropagationPrivate;
        let (ms, _) = cri_mounts(&[
            cri("/a/b/c", host, false, p),
            cri("/a/", host, false, p),
            cri("/etc/hosts", host, true, p),
        ])
        .unwrap();
        let dests: Vec<_> = ms
            .iter()
            .map(|m| m.destination().display().to_string())
            .collect();
        assert_eq!(dests, ["/a", "/etc/hosts", "/a/b/c"]);

        let pod = PodFiles {
            hosts: Some("/p/hosts".into()),
            ..Default::default()
        };
        let mut defaults = default_mounts(false, &modes(NamespaceMode::Pod), &pod);
        defaults.extend(pod_file_mounts(&pod, false));
        let merged = merge(defaults, ms);
        let hosts: Vec<_> = merged
            .iter()
            .filter(|m| m.destination() == Path::new("/etc/hosts"))
            .collect();
        assert_eq!(hosts.len(), 1);
        assert_eq!(hosts[0].source().as_deref(), Some(dir.path()));
    }

    #[test]
    fn devices_from_the_host() {
        let devs = devices(
            &[Device {
                container_path: "/dev/mynull".into(),
                host_path: "/dev/null".into(),
                permissions: "rw".into(),
            }],
            false,
        )
        .unwrap();
        assert_eq!(devs.devices.len(), 1);
        let d = &devs.devices[0];
        assert_eq!((d.typ(), d.major(), d.minor()), (LinuxDeviceType::C, 1, 3));
        assert_eq!(d.path(), Path::new("/dev/mynull"));
        let last = devs.cgroup_rules.last().unwrap();
        assert!(last.allow());
        assert_eq!(
            (last.major(), last.minor(), last.access().as_deref()),
            (Some(1), Some(3), Some("rw"))
        );
        assert!(
            !devs.cgroup_rules[0].allow(),
            "first rule denies everything"
        );

        let err = devices(
            &[Device {
                container_path: "/dev/x".into(),
                host_path: "/etc/hostname".into(),
                permissions: String::new(),
            }],
            false,
        )
        .unwrap_err();
        assert!(err.to_string().contains("devices[0].host_path"), "{err}");
        let err = devices(
            &[Device {
                container_path: "/dev/x".into(),
                host_path: "/dev/null".into(),
                permissions: "rwx".into(),
            }],
            false,
        )
        .unwrap_err();
        assert!(err.to_string().contains("devices[0].permissions"), "{err}");

        let privileged = devices(&[], true).unwrap();
        assert_eq!(privileged.cgroup_rules.len(), 1);
        assert!(privileged.cgroup_rules[0].allow() && privileged.cgroup_rules[0].typ().is_none());
        assert!(privileged
            .devices
            .iter()
            .any(|d| d.path() == Path::new("/dev/null")));
        assert!(!privileged
            .devices
            .iter()
            .any(|d| d.path().starts_with("/dev/pts")));
    }

    #[test]
    fn decodes_device_numbers() {
        // glibc's makedev() encoding, with a major and minor above 12/8 bits.
        let (major, minor): (u64, u64) = (5000, 70000);
        let rdev = ((major & 0xfff) << 8)
            | ((major & !0xfff) << 32)
            | (minor & 0xff)
            | ((minor & !0xff) << 12);
        assert_eq!((dev_major(rdev), dev_minor(rdev)), (5000, 70000));
    }
}

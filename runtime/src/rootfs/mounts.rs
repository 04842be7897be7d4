//! The spec's mounts, one at a time, inside the container's root: binds,
//! special filesystems and the cgroup mount.

use super::*;

/// Mounts cgroupfs at `dest` (a path inside the rootfs). Each sub-directory
/// is resolved afresh, after the tmpfs above it is mounted.
pub(super) fn mount_cgroup(
    sys: &dyn Syscall,
    host: &HostInfo,
    rootfs: &Path,
    dest: &Path,
    flags: u64,
    field: &str,
) -> Result<()> {
    let base = flags & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC);
    let target = in_root(sys, rootfs, dest, Some(Kind::Dir), field)?;
    if host.cgroup_v1.is_empty() {
        return sys
            .mount(
                Some(Path::new("cgroup2")),
                &target.path,
                Some("cgroup2"),
                base,
                None,
            )
            .map_err(sys_err(format!(
                "{field}: mount cgroup2 on {}",
                dest.display()
            )));
    }
    sys.mount(
        Some(Path::new("tmpfs")),
        &target.path,
        Some("tmpfs"),
        MS_NOSUID | MS_NODEV | MS_NOEXEC,
        Some("mode=755"),
    )
    .map_err(sys_err(format!(
        "{field}: mount tmpfs on {}",
        dest.display()
    )))?;
    for h in &host.cgroup_v1 {
        let d = dest.join(&h.name);
        let t = in_root(sys, rootfs, &d, Some(Kind::Dir), field)?;
        sys.mount(
            Some(Path::new("cgroup")),
            &t.path,
            Some("cgroup"),
            base,
            Some(&h.options),
        )
        .map_err(sys_err(format!(
            "{field}: mount cgroup {} on {}",
            h.options,
            d.display()
        )))?;
    }
    if let Some(v2) = &host.cgroup_v2_dir {
        if !v2.is_empty() {
            let d = dest.join(v2);
            let t = in_root(sys, rootfs, &d, Some(Kind::Dir), field)?;
            sys.mount(
                Some(Path::new("cgroup2")),
                &t.path,
                Some("cgroup2"),
                base,
                None,
            )
            .map_err(sys_err(format!(
                "{field}: mount cgroup2 on {}",
                d.display()
            )))?;
        }
    }
    if flags & MS_RDONLY != 0 {
        let t = in_root(sys, rootfs, dest, None, field)?;
        sys.mount(
            None,
            &t.path,
            None,
            MS_REMOUNT | MS_BIND | MS_RDONLY | base,
            None,
        )
        .map_err(sys_err(format!(
            "{field}: remount {} read-only",
            dest.display()
        )))?;
    }
    Ok(())
}

/// Mounts one spec mount. The destination is resolved inside the rootfs by
/// the kernel and mounted through its descriptor; after the mount it is
/// resolved again, so a remount or propagation change reaches the new mount
/// and not the directory under it.
pub(super) fn do_mount(
    sys: &dyn Syscall,
    host: &HostInfo,
    rootfs: &Path,
    (m, opened): (&Mount, Option<std::os::fd::RawFd>),
    field: &str,
    before_cgroup: &mut dyn FnMut() -> Result<()>,
) -> Result<()> {
    let dest = m.destination();
    let opts = m.options().clone().unwrap_or_default();
    let (flags, prop, data) = parse_options(&opts);
    let typ = m.typ().clone().unwrap_or_default();
    let is_bind = flags & MS_BIND != 0 || typ == "bind";
    if is_bind {
        let src = m.source().clone().unwrap_or_default();
        // An opened source is asked through its fd: its path may be out of
        // this process's reach.
        let is_dir = match opened {
            Some(fd) => Path::new(&format!("/proc/self/fd/{fd}")).is_dir(),
            None => src.is_dir(),
        };
        let kind = if is_dir { Kind::Dir } else { Kind::File };
        let target = in_root(
            sys,
            rootfs,
            dest,
            Some(kind),
            &format!("{field}.destination"),
        )?;
        let rec = if opts.iter().any(|o| o == "rbind") {
            MS_REC
        } else {
            0
        };
        match opened {
            Some(fd) => sys.attach_mount(fd, &target.path),
            None => sys.mount(Some(&src), &target.path, None, MS_BIND | rec, None),
        }
        .map_err(sys_err(format!(
            "{field}: bind {} on {}",
            src.display(),
            dest.display()
        )))?;
        let extra = flags & !(MS_BIND | MS_REC | MS_REMOUNT);
        if extra != 0 {
            let target = in_root(sys, rootfs, dest, None, field)?;
            sys.mount(
                None,
                &target.path,
                None,
                MS_BIND | MS_REMOUNT | rec | extra,
                None,
            )
            .map_err(sys_err(format!(
                "{field}: remount {} with options",
                dest.display()
            )))?;
        }
        if opts.iter().any(|o| o == "rro") {
            let target = in_root(sys, rootfs, dest, None, field)?;
            sys.set_readonly_recursive(&target.path)
                .map_err(sys_err(format!(
                    "{field}: make {} and its submounts read-only",
                    dest.display()
                )))?;
        }
    } else if typ == "cgroup" || typ == "cgroup2" {
        before_cgroup()?;
        mount_cgroup(sys, host, rootfs, dest, flags, field)?;
    } else {
        let target = in_root(
            sys,
            rootfs,
            dest,
            Some(Kind::Dir),
            &format!("{field}.destination"),
        )?;
        let src = m.source().clone().unwrap_or_else(|| PathBuf::from(&typ));
        let data = (!data.is_empty()).then_some(data.as_str());
        sys.mount(Some(&src), &target.path, Some(&typ), flags, data)
            .map_err(sys_err(format!(
                "{field}: mount {typ} on {}",
                dest.display()
            )))?;
    }
    if prop != 0 {
        let target = in_root(sys, rootfs, dest, None, field)?;
        sys.mount(None, &target.path, None, prop, None)
            .map_err(sys_err(format!(
                "{field}: set propagation of {}",
                dest.display()
            )))?;
    }
    Ok(())
}

//! Turning `linux.cgroupsPath` into a path relative to each hierarchy root.

use std::path::PathBuf;

/// Parses a cgroupfs-driver path (`/kubepods/burstable/pod<uid>/<id>`) or a
/// systemd-driver triple (`slice:prefix:name`) into a relative path. An empty
/// value gives `berth/<id>`.
pub fn parse_cgroups_path(value: &str, id: &str) -> Result<PathBuf, String> {
    if value.is_empty() {
        return Ok(PathBuf::from("berth").join(id));
    }
    let rel = if !value.starts_with('/') && value.split(':').count() == 3 {
        systemd_path(value)?
    } else {
        value.trim_start_matches('/').to_string()
    };
    if rel.is_empty() {
        return Err(format!("{value:?} names the root cgroup"));
    }
    for comp in rel.split('/') {
        if comp.is_empty() || comp == "." || comp == ".." {
            return Err(format!("{value:?} has an empty, . or .. component"));
        }
    }
    Ok(PathBuf::from(rel))
}

// `kubepods-burstable-pod1.slice:cri-berth:abc` ->
// `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-berth-abc.scope`
fn systemd_path(value: &str) -> Result<String, String> {
    let mut parts = value.splitn(3, ':');
    let (slice, prefix, name) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    if name.is_empty() {
        return Err(format!("{value:?}: systemd cgroup name is empty"));
    }
    let slice = if slice.is_empty() {
        "system.slice"
    } else {
        slice
    };
    let mut out = expand_slice(slice)?;
    let unit = if name.ends_with(".slice") {
        name.to_string()
    } else if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    if unit.contains('/') {
        return Err(format!("{value:?}: unit name contains '/'"));
    }
    if !out.is_empty() {
        out.push('/');
    }
    out.push_str(&unit);
    Ok(out)
}

fn expand_slice(slice: &str) -> Result<String, String> {
    let base = slice
        .strip_suffix(".slice")
        .ok_or_else(|| format!("{slice:?} is not a .slice"))?;
    if base == "-" {
        return Ok(String::new());
    }
    if base.contains('/') || base.starts_with('-') || base.ends_with('-') || base.contains("--") {
        return Err(format!("{slice:?} is not a valid slice name"));
    }
    let mut dirs = Vec::new();
    let mut acc = String::new();
    for part in base.split('-') {
        if !acc.is_empty() {
            acc.push('-');
        }
        acc.push_str(part);
        dirs.push(format!("{acc}.slice"));
    }
    Ok(dirs.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cgroupfs_and_systemd_paths() {
        assert_eq!(
            parse_cgroups_path("/kubepods/burstable/podabc/c1", "c1").unwrap(),
            PathBuf::from("kubepods/burstable/podabc/c1")
        );
        assert_eq!(
            parse_cgroups_path("kubepods-burstable-pod1.slice:cri-berth:abc", "abc").unwrap(),
            PathBuf::from(
                "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-berth-abc.scope"
            )
        );
        assert_eq!(
            parse_cgroups_path(":berth:abc", "abc").unwrap(),
            PathBuf::from("system.slice/berth-abc.scope")
        );
        assert_eq!(
            parse_cgroups_path("", "abc").unwrap(),
            PathBuf::from("berth/abc")
        );
        parse_cgroups_path("/a/../b", "x").unwrap_err();
        parse_cgroups_path("/", "x").unwrap_err();
        parse_cgroups_path("bad:pre:name", "x").unwrap_err();
    }
}

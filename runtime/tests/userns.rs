//! Root tests for pod user namespaces: `pin-ns --uid-map/--gid-map`, a
//! container joining the pinned user namespace, id-mapped mounts.

mod common;

use berth_runtime::idmap::{clone_idmapped, idmap_mount_in_place, IdMap};
use berth_runtime::sys::idmap::{attach, owner_userns_ino};
use common::*;
use serde_json::json;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

/// Unpins (and unmounts what the test mounted) on drop.
struct Cleanup(Vec<std::path::PathBuf>, std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for m in &self.0 {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = berth_runtime::unpin_namespaces(&self.1);
    }
}

const HOST_BASE: u32 = 3 * 65536;

fn pin(dir: &Path, base: u32) {
    let map = format!("0:{base}:65536");
    let out = Command::new(MONITOR)
        .args(["pin-ns", "--dir"])
        .arg(dir)
        .args(["--net", "--ipc", "--uts", "--hostname", "userns-pod"])
        .args(["--sysctl", "net.ipv4.ip_unprivileged_port_start=0"])
        .args(["--uid-map", &map, "--gid-map", &map])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pin-ns: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn pinned_namespaces_are_owned_by_the_pods_user_namespace() {
    if !can_run() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ns");
    let _c = Cleanup(vec![], dir.clone());
    pin(&dir, HOST_BASE);
    let user = std::fs::metadata(dir.join("user")).unwrap().ino();
    for ns in ["net", "ipc", "uts"] {
        assert_eq!(
            owner_userns_ino(&dir.join(ns)).unwrap(),
            user,
            "{ns} namespace must belong to the pod's user namespace"
        );
    }
    // The host's own net namespace does not.
    assert_ne!(
        owner_userns_ino(Path::new("/proc/self/ns/net")).unwrap(),
        user
    );
    // Bad maps are refused before anything is made.
    let bad = tmp.path().join("bad");
    let out = Command::new(MONITOR)
        .args(["pin-ns", "--dir"])
        .arg(&bad)
        .args(["--net", "--uid-map", "0:65536:0", "--gid-map", "0:65536:1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--uid-map"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!bad.join("user").exists());
}

#[test]
fn idmapped_mount_shows_owners_through_the_map_and_proc_cannot_be_mapped() {
    if !can_run() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ns");
    let src = tmp.path().join("src");
    let dst = tmp.path().join("dst");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&dst).unwrap();
    std::fs::write(src.join("root-file"), "x").unwrap();
    let _c = Cleanup(vec![dst.clone()], dir.clone());
    pin(&dir, HOST_BASE);
    let ns = std::fs::File::open(dir.join("user")).unwrap();
    let fd = clone_idmapped(&src, &ns, false).unwrap();
    attach(fd.as_raw_fd(), &dst).unwrap();
    // On disk 0; through the mount the pod's root.
    assert_eq!(std::fs::metadata(src.join("root-file")).unwrap().uid(), 0);
    let md = std::fs::metadata(dst.join("root-file")).unwrap();
    assert_eq!((md.uid(), md.gid()), (HOST_BASE, HOST_BASE));
    // The host's root has no id on this mount: it cannot create files there.
    let err = std::fs::write(dst.join("new"), "y").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EOVERFLOW), "{err}");
    // procfs cannot be id-mapped.
    let err = clone_idmapped(Path::new("/proc"), &ns, false).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{err}");
    assert_eq!(
        IdMap::parse("0:1:2").map(|m| m.arg()),
        Some("0:1:2".to_string())
    );
}

#[test]
fn container_joins_the_pods_user_namespace_with_an_idmapped_rootfs_and_volume() {
    if !can_run() {
        return;
    }
    let mut f = Fixture::new("userns");
    let dir = f.tmp.path().join("ns");
    let vol = f.tmp.path().join("vol");
    let plain = f.tmp.path().join("plain");
    std::fs::create_dir_all(&vol).unwrap();
    std::fs::create_dir_all(&plain).unwrap();
    std::fs::set_permissions(&plain, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let rootfs = f.rootfs();
    let _c = Cleanup(vec![rootfs.clone()], dir.clone());
    pin(&dir, HOST_BASE);
    // The rootfs as berthd mounts it: a mount, id-mapped in place.
    nix::mount::mount(
        Some(&rootfs),
        &rootfs,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();
    idmap_mount_in_place(&rootfs, &dir.join("user")).unwrap();

    let map = json!([{"containerID": 0, "hostID": HOST_BASE, "size": 65536}]);
    f.spec["linux"]["uidMappings"] = map.clone();
    f.spec["linux"]["gidMappings"] = map;
    f.spec["linux"]["namespaces"] = json!([
        {"type": "pid"},
        {"type": "mount"},
        {"type": "cgroup"},
        {"type": "user", "path": dir.join("user")},
        {"type": "network", "path": dir.join("net")},
        {"type": "ipc", "path": dir.join("ipc")},
        {"type": "uts", "path": dir.join("uts")},
    ]);
    f.spec["hostname"] = json!(null);
    let mut caps = all_caps();
    caps.push("CAP_SYS_ADMIN");
    for set in ["bounding", "effective", "permitted"] {
        f.spec["process"]["capabilities"][set] = json!(caps);
    }
    let idmap = format!("idmap=uids=0-{HOST_BASE}-65536;gids=0-{HOST_BASE}-65536");
    let mounts = f.spec["mounts"].as_array_mut().unwrap();
    mounts.push(json!({"destination": "/vol", "type": "bind", "source": vol, "options": ["rbind", "rw", idmap]}));
    mounts.push(json!({"destination": "/plain", "type": "bind", "source": plain, "options": ["rbind", "rw"]}));
    f.args(
        "id -u; stat -c %u /bin/busybox; hostname; cat /proc/self/uid_map; \
         touch /vol/a /plain/b /c && echo wrote; \
         mkdir -p /m && mount -t tmpfs t /m && echo mounted; \
         mknod /m/null c 1 3 2>/dev/null || echo no-mknod; \
         ls /sys/class/net",
    );
    let st = f.run();
    let log = f.log_lines("stdout");
    assert_eq!(
        st.exit.as_ref().map(|e| e.code),
        Some(0),
        "{log:?} {}",
        f.log()
    );
    assert_eq!(log[0], "0", "root inside: {log:?}");
    assert_eq!(log[1], "0", "image files owned by the pod's root: {log:?}");
    assert_eq!(log[2], "userns-pod", "the pod's uts namespace: {log:?}");
    let words: Vec<&str> = log[3].split_whitespace().collect();
    assert_eq!(words, ["0", &HOST_BASE.to_string(), "65536"], "{log:?}");
    assert!(log.contains(&"wrote".to_string()), "{log:?}");
    assert!(log.contains(&"mounted".to_string()), "{log:?} {}", f.log());
    // CAP_SYS_ADMIN and CAP_MKNOD count in the pod's namespaces only: a
    // tmpfs of its own yes, a device node no.
    assert!(log.contains(&"no-mknod".to_string()), "{log:?}");
    // Through the id-mapped volume container root writes host root's files;
    // through the plain bind its own host id.
    assert_eq!(std::fs::metadata(vol.join("a")).unwrap().uid(), 0);
    assert_eq!(std::fs::metadata(plain.join("b")).unwrap().uid(), HOST_BASE);
    // The rootfs write, seen through the id-mapped rootfs: the pod's root.
    assert_eq!(
        std::fs::metadata(rootfs.join("c")).unwrap().uid(),
        HOST_BASE
    );
}

//! Root tests: paths inside an image's rootfs resolve inside it (a symlink
//! chain past the kernel's limit, a symlink swapped during create), and mount
//! propagation between the host and a container's bind mounts.

mod common;

use common::*;
// `SharedDir::with` serves the integration tests only.
#[allow(dead_code)]
#[path = "../../integration/src/shared_dir.rs"]
mod shared_dir;
use serde_json::json;
use shared_dir::SharedDir;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Makes `<rootfs>/l0 -> l1 -> ... -> l40 -> target`: 41 links, one more
/// than the kernel follows.
fn link_chain(rootfs: &Path, target: &Path) {
    for i in 0..=40 {
        let to = if i == 40 {
            target.to_path_buf()
        } else {
            PathBuf::from(format!("l{}", i + 1))
        };
        std::os::unix::fs::symlink(to, rootfs.join(format!("l{i}"))).unwrap();
    }
}

fn bind(dest: &str, src: &Path, opts: &[&str]) -> serde_json::Value {
    json!({"destination": dest, "type": "bind", "source": src, "options": opts})
}

fn push_mount(f: &mut Fixture, m: serde_json::Value) {
    f.spec["mounts"].as_array_mut().unwrap().push(m);
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn volume_target_through_41_links_fails_with_eloop_and_touches_no_host_path() {
    if !can_run() {
        return;
    }
    let host = tempfile::tempdir().unwrap();
    let outside = host.path().join("outside");
    let vol = host.path().join("vol");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::create_dir_all(&vol).unwrap();
    let mut f = Fixture::new("loopvol");
    link_chain(&f.rootfs(), &outside);
    push_mount(&mut f, bind("/l0/sub", &vol, &["rbind", "rw"]));
    let out = f.create_raw(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "create must fail");
    assert!(
        err.contains("mounts[6]") && err.contains("os error 40"),
        "{err}"
    );
    assert!(entries(&outside).is_empty(), "{:?}", entries(&outside));

    // A file target: the old resolver created it through the last link.
    let mut f = Fixture::new("loopfile");
    link_chain(&f.rootfs(), &outside);
    let file = host.path().join("file");
    std::fs::write(&file, "x").unwrap();
    push_mount(&mut f, bind("/l0/f", &file, &["rbind", "ro"]));
    let out = f.create_raw(&[]);
    assert!(!out.status.success(), "create must fail");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("os error 40"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(entries(&outside).is_empty(), "{:?}", entries(&outside));
}

#[test]
fn workdir_through_41_links_fails_with_eloop() {
    if !can_run() {
        return;
    }
    let mut f = Fixture::new("loopcwd");
    link_chain(&f.rootfs(), Path::new("/etc"));
    f.spec["process"]["cwd"] = json!("/l0");
    let out = f.create_raw(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "create must fail");
    assert!(
        err.contains("process.cwd") && err.contains("os error 40"),
        "{err}"
    );
    // 40 links are within the limit and do resolve, inside the rootfs.
    let mut f = Fixture::new("cwd40");
    link_chain(&f.rootfs(), Path::new("/etc"));
    f.spec["process"]["cwd"] = json!("/l1");
    f.args("pwd -P; ls");
    let st = f.run();
    assert_eq!(st.exit.unwrap().code, 0, "{}", f.log());
    assert_eq!(f.log_lines("stdout"), vec!["/etc", "group", "passwd"]);
}

#[test]
fn symlink_swapped_during_create_never_lands_outside() {
    if !can_run() {
        return;
    }
    // `<rootfs>/a` is swapped (renameat2 RENAME_EXCHANGE, so it always
    // exists) between a directory of the rootfs and a symlink to a host
    // directory, while containers with a volume at /a/sub are created.
    let host = tempfile::tempdir().unwrap();
    let outside = host.path().join("outside");
    let vol = host.path().join("vol");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::create_dir_all(&vol).unwrap();
    std::fs::write(vol.join("marker"), "vol\n").unwrap();
    let mut f = Fixture::new("race");
    let rootfs = f.rootfs();
    std::fs::create_dir(rootfs.join("a")).unwrap();
    std::os::unix::fs::symlink(&outside, rootfs.join("a_link")).unwrap();
    push_mount(&mut f, bind("/a/sub", &vol, &["rbind", "rw"]));

    let stop = Arc::new(AtomicBool::new(false));
    let flips = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let flipper = {
        let (stop, flips, rootfs) = (stop.clone(), flips.clone(), rootfs.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                nix::fcntl::renameat2(
                    None,
                    &rootfs.join("a"),
                    None,
                    &rootfs.join("a_link"),
                    nix::fcntl::RenameFlags::RENAME_EXCHANGE,
                )
                .unwrap();
                flips.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let mut ok = 0;
    for _ in 0..40 {
        let out = f.create_raw(&[]);
        if out.status.success() {
            // Wherever /a pointed at the time, the volume is in the
            // container's tree.
            let c = berth_runtime::Container::load(&f.state_dir()).unwrap();
            let info = std::fs::read_to_string(format!("/proc/{}/mountinfo", c.pid())).unwrap();
            assert!(
                info.lines()
                    .any(|l| l.split(' ').nth(4).is_some_and(|m| m.ends_with("/sub"))),
                "{info}"
            );
            c.delete(true).unwrap();
            ok += 1;
        }
        assert!(entries(&outside).is_empty(), "{:?}", entries(&outside));
    }
    stop.store(true, Ordering::Relaxed);
    flipper.join().unwrap();
    assert!(flips.load(Ordering::Relaxed) > 0);
    assert!(ok > 0, "no create succeeded while the link was flipping");
    assert!(entries(&outside).is_empty(), "{:?}", entries(&outside));
    assert_eq!(entries(&vol), vec!["marker"]);
}

/// Runs a container with `shared` bound at /vol with `opts` (and the
/// rootfs propagation a CRI runtime sets with them). The container mounts a
/// tmpfs on /vol/inner and reports, after the host mounted one on
/// /vol/fromhost, whether it sees it. Returns (the host saw the container's
/// mount, the container saw the host's).
fn propagation_round(name: &str, opts: &[&str], rootfs_prop: Option<&str>) -> (bool, bool) {
    let shared = SharedDir::new();
    let dir = &shared.path;
    let mut f = Fixture::new(name);
    let mut caps = all_caps();
    caps.push("CAP_SYS_ADMIN");
    f.spec["process"]["capabilities"] =
        json!({"bounding": caps, "effective": caps, "permitted": caps});
    if let Some(p) = rootfs_prop {
        f.spec["linux"]["rootfsPropagation"] = json!(p);
    }
    let mut all = vec!["rbind"];
    all.extend_from_slice(opts);
    push_mount(&mut f, bind("/vol", dir, &all));
    f.args(
        "mount -t tmpfs tmpfs /vol/inner && echo mounted; \
         while [ ! -e /vol/go ]; do sleep 0.05; done; \
         [ -e /vol/fromhost/marker ] && echo saw-host || echo no-host; cat /proc/self/mountinfo >&2",
    );
    let c = f.create();
    c.start().unwrap();
    wait_for("the container's mount", || f.log().contains("mounted"));
    let host_saw = shared.is_mount_point("inner");
    nix::mount::mount(
        Some("tmpfs"),
        &dir.join("fromhost"),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    std::fs::write(dir.join("fromhost/marker"), "host\n").unwrap();
    std::fs::write(dir.join("go"), "").unwrap();
    let st = wait_stopped(&c);
    assert_eq!(st.exit.unwrap().code, 0, "{}", f.log());
    let out = f.log_lines("stdout");
    assert_eq!(out[0], "mounted", "{out:?}");
    eprintln!("{}", f.log());
    (host_saw, out[1] == "saw-host")
}

#[test]
fn bidirectional_mount_propagates_both_ways() {
    if !can_run() {
        return;
    }
    assert_eq!(
        propagation_round("bidir", &["rshared", "rw"], Some("rshared")),
        (true, true)
    );
}

#[test]
fn host_to_container_mount_sees_host_mounts_only() {
    if !can_run() {
        return;
    }
    // As a kubelet sends a hostPath volume: read-only, host-to-container.
    assert_eq!(
        propagation_round("h2c", &["rslave", "ro"], Some("rslave")),
        (false, true)
    );
    assert_eq!(
        propagation_round("h2crw", &["rslave", "rw"], Some("rslave")),
        (false, true)
    );
}

#[test]
fn private_mount_propagates_nothing() {
    if !can_run() {
        return;
    }
    assert_eq!(
        propagation_round("private", &["rprivate", "rw"], None),
        (false, false)
    );
    // Private next to a bidirectional mount in the same container stays private.
    assert_eq!(
        propagation_round("private2", &["rprivate", "rw"], Some("rshared")),
        (false, false)
    );
}

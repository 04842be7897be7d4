//! Pods with their own user namespace (`hostUsers: false`), through gRPC as a
//! kubelet 1.36 sends them: `userns_options` mode POD with the kubelet's
//! maps, volumes with and without `uid_mappings`/`gid_mappings`.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_integration::calls::{self, teardown_pod, wait_exited};
use berth_integration::env::{self, TestEnv};
use berth_integration::{skip, skip_if};
use berth_proto::v1::*;

/// Host id bases of this file's pods, one set per test (they run at once):
/// far from the ids of the host's users and of other tests' pods, so a scan
/// of /proc for a map finds only that test's processes.
const BASE_A: u32 = 65536 * 501;
const BASE_B: u32 = 65536 * 502;
const BASE_C: u32 = 65536 * 503;
const BASE_D: u32 = 65536 * 504;
const BASE_E: u32 = 65536 * 505;
/// linux/capability.h.
const CAP_SYS_ADMIN: u32 = 21;

fn map(base: u32) -> Vec<IdMapping> {
    vec![IdMapping {
        container_id: 0,
        host_id: base,
        length: 65536,
    }]
}

fn userns(mode: NamespaceMode, uids: Vec<IdMapping>, gids: Vec<IdMapping>) -> NamespaceOption {
    NamespaceOption {
        userns_options: Some(UserNamespace {
            mode: mode as i32,
            uids,
            gids,
        }),
        ..calls::namespaces(NamespaceMode::Pod, NamespaceMode::Container)
    }
}

fn userns_pod(env: &TestEnv, name: &str, ns: NamespaceOption) -> PodSandboxConfig {
    PodSandboxConfig {
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(ns),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..env.pod_config(name)
    }
}

/// A busybox container running `script`, with the pod's namespace options
/// copied in as a kubelet does.
fn container(env: &TestEnv, name: &str, ns: &NamespaceOption, script: &str) -> ContainerConfig {
    ContainerConfig {
        linux: Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(ns.clone()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..env::container_config(name, &env.image("busybox"), &["sh", "-c", script])
    }
}

/// The stdout lines of a container's CRI log.
fn stdout(env: &TestEnv, pod: &str, name: &str) -> Vec<String> {
    let path = env.logs.path().join(pod).join(format!("{name}.log"));
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut p = l.splitn(4, ' ');
            let (_, s, _, msg) = (p.next()?, p.next()?, p.next()?, p.next().unwrap_or(""));
            (s == "stdout").then(|| msg.to_string())
        })
        .collect()
}

/// Host pids whose uid_map maps 0 to `base`: this file's pod processes.
fn pids_mapped_to(base: u32) -> Vec<i32> {
    let want = format!("0 {base} 65536");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/uid_map"))
                .map(|m| m.split_whitespace().collect::<Vec<_>>().join(" ") == want)
                .unwrap_or(false)
        })
        .collect()
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn mount(container: &str, host: &Path, maps: Option<u32>) -> Mount {
    Mount {
        container_path: container.into(),
        host_path: host.display().to_string(),
        uid_mappings: maps.map(map).unwrap_or_default(),
        gid_mappings: maps.map(map).unwrap_or_default(),
        ..Default::default()
    }
}

fn image_mount(container: &str, image: &str) -> Mount {
    Mount {
        container_path: container.into(),
        image: Some(ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        readonly: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn userns_pod_root_is_an_unprivileged_host_id_with_idmapped_volumes() {
    skip_if!(skip::no_pod_env());
    let mut env = TestEnv::start_for_pods().await.unwrap();
    env.pull("layered").await.unwrap();
    let ns = userns(NamespaceMode::Pod, map(BASE_A), map(BASE_A));
    let pod_config = userns_pod(&env, "userns-a", ns.clone());
    let pod = env.run_pod(&pod_config).await.unwrap();

    // An emptyDir-style dir with the pod's maps (a kubelet's volume), and a
    // world-writable dir without them.
    let host = tempfile::tempdir().unwrap();
    let (mapped, plain) = (host.path().join("mapped"), host.path().join("plain"));
    std::fs::create_dir(&mapped).unwrap();
    std::fs::create_dir(&plain).unwrap();
    std::fs::set_permissions(host.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(mapped.join("from-host"), "h").unwrap();
    let berthd_pid = env.berthd.pid().expect("berthd runs");
    let script = format!(
        "id -u; stat -c %u /bin/busybox; stat -c %u /mapped/from-host; \
         cat /proc/self/uid_map | tr -s ' ' | sed 's/^ //'; \
         touch /mapped/by-root /plain/by-root /in-rootfs && echo wrote; \
         ls /proc | grep -c '^[0-9]'; \
         kill -0 {berthd_pid} 2>/dev/null && echo sees-berthd || echo no-berthd; \
         echo x > /sys/kernel/uevent_helper 2>/dev/null && echo sys-writable || echo sys-ro; \
         stat -c %u:%g /img-one/bin/busybox /img-many/data/keep.txt; cat /img-many/data/changed.txt; \
         touch /mapped/ready; exec sleep 600"
    );
    let mut c = container(&env, "main", &ns, &script);
    c.mounts = vec![
        mount("/mapped", &mapped, Some(BASE_A)),
        mount("/plain", &plain, None),
        // Image volumes: a one-layer image (a bind of its snapshot) and a
        // three-layer one (an overlay of its snapshots).
        image_mount("/img-one", &env.image("busybox")),
        image_mount("/img-many", &env.image("layered")),
    ];
    let id = env.run_container(&pod, &pod_config, c).await.unwrap();
    wait_for("the container's ready file", || {
        mapped.join("ready").exists()
    })
    .await;

    let out = stdout(&env, "userns-a", "main");
    assert_eq!(out[0], "0", "root inside: {out:?}");
    assert_eq!(out[1], "0", "image files show as the pod's root: {out:?}");
    assert_eq!(
        out[2], "0",
        "host root's file on the mapped volume: {out:?}"
    );
    assert_eq!(out[3], format!("0 {BASE_A} 65536"), "{out:?}");
    assert_eq!(out[4], "wrote", "{out:?}");
    let procs: u32 = out[5].parse().unwrap();
    assert!(procs <= 3, "sees only its own processes: {out:?}");
    assert_eq!(out[6], "no-berthd", "{out:?}");
    assert_eq!(out[7], "sys-ro", "{out:?}");
    // Image volumes are id-mapped like the rootfs: root's files are the pod's
    // root's, not the overflow id.
    assert_eq!(out[8], "0:0", "one-layer image volume: {out:?}");
    assert_eq!(out[9], "0:0", "overlay image volume: {out:?}");
    assert_eq!(out[10], "upper", "{out:?}");

    // Through the id-mapped volume container root writes as host root (the
    // volume keeps host ids); without maps, as the pod's host id.
    assert_eq!(std::fs::metadata(mapped.join("by-root")).unwrap().uid(), 0);
    assert_eq!(std::fs::metadata(mapped.join("by-root")).unwrap().gid(), 0);
    let plain_md = std::fs::metadata(plain.join("by-root")).unwrap();
    assert_eq!((plain_md.uid(), plain_md.gid()), (BASE_A, BASE_A));

    // From the host: the container's root is BASE_A, its maps the kubelet's.
    let pids = pids_mapped_to(BASE_A);
    assert!(!pids.is_empty(), "no process with the pod's uid_map");
    for pid in &pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        let ids: Vec<&str> = uid.split_whitespace().skip(1).collect();
        assert_eq!(ids, vec![BASE_A.to_string(); 4], "{pid}: {uid}");
        let gid_map = std::fs::read_to_string(format!("/proc/{pid}/gid_map")).unwrap();
        assert_eq!(
            gid_map.split_whitespace().collect::<Vec<_>>(),
            ["0", &BASE_A.to_string(), "65536"]
        );
        // Its cgroup is handed to the pod's root (cgroup.procs and the dir).
        let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let dir = cg.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
            if ctrls.split(',').any(|c| c == "memory") {
                Some(PathBuf::from(format!("/sys/fs/cgroup/memory{path}")))
            } else if ctrls.is_empty() && Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
                Some(PathBuf::from(format!("/sys/fs/cgroup{path}")))
            } else {
                None
            }
        });
        let dir = dir.expect("a memory (v1) or unified (v2) cgroup");
        for f in [dir.clone(), dir.join("cgroup.procs")] {
            let md = std::fs::metadata(&f).unwrap();
            assert_eq!((md.uid(), md.gid()), (BASE_A, BASE_A), "{}", f.display());
        }
        // Its capabilities are the pod's: CAP_SYS_ADMIN is not in its bounding set.
        let bnd = status.lines().find(|l| l.starts_with("CapBnd:")).unwrap();
        let mask = u64::from_str_radix(bnd.split_whitespace().nth(1).unwrap(), 16).unwrap();
        assert_eq!(mask & (1 << CAP_SYS_ADMIN), 0, "{bnd}");
    }

    // ExecSync joins the same user namespace.
    let r = calls::exec_sync(
        &mut env.cri,
        &id,
        &["sh", "-c", "id -u; cat /proc/self/uid_map"],
        10,
    )
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&r.stdout);
    assert!(text.starts_with("0\n"), "{text}");
    assert!(text.contains(&BASE_A.to_string()), "{text}");

    teardown_pod(&mut env.cri, &pod).await;
    assert_eq!(env.berthd.leftovers(&[&pod, &id]), Vec::<String>::new());
    wait_for("the pod's processes to exit", || {
        pids_mapped_to(BASE_A).is_empty()
    })
    .await;
}

/// Every `bin/busybox` in berthd's snapshot store.
fn snapshot_busyboxes(root: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(root.join("snapshots"))
        .map(|d| {
            d.filter_map(|e| Some(e.ok()?.path().join("bin/busybox")))
                .filter(|p| p.exists())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn pods_with_different_maps_share_the_image_snapshots() {
    skip_if!(skip::no_pod_env());
    let mut env = TestEnv::start_for_pods().await.unwrap();
    let root = env.berthd.root_dir().to_path_buf();
    let mut seen = Vec::new();
    // The second pod shares one pid namespace (its pause init then lives in
    // the pod's user namespace too).
    for (name, base, pid) in [
        ("userns-b1", BASE_C, NamespaceMode::Container),
        ("userns-b2", BASE_D, NamespaceMode::Pod),
    ] {
        let ns = NamespaceOption {
            pid: pid as i32,
            ..userns(NamespaceMode::Pod, map(base), map(base))
        };
        let pod_config = userns_pod(&env, name, ns.clone());
        let pod = env.run_pod(&pod_config).await.unwrap();
        let c = container(&env, "c", &ns, "stat -c %u /bin/busybox; exec sleep 600");
        let id = env.run_container(&pod, &pod_config, c).await.unwrap();
        wait_for("the container's output", || {
            !stdout(&env, name, "c").is_empty()
        })
        .await;
        assert_eq!(
            stdout(&env, name, "c"),
            ["0"],
            "{name}: busybox is root's inside"
        );
        if pid == NamespaceMode::Pod {
            let pause = pids_mapped_to(base)
                .into_iter()
                .filter(|p| {
                    std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                        .is_ok_and(|c| !c.contains("sleep"))
                })
                .count();
            assert_eq!(
                pause, 1,
                "{name}: the pause init runs in the pod's user namespace"
            );
        }
        // From the host the same file shows as this pod's root.
        let rootfs = root.join("containers").join(&id).join("rootfs");
        let md = std::fs::symlink_metadata(rootfs.join("bin/busybox")).unwrap();
        assert_eq!((md.uid(), md.gid()), (base, base), "{name}");
        // The writable layer's root is the pod's root, nothing else chowned.
        let upper = std::fs::metadata(root.join("containers").join(&id).join("upper")).unwrap();
        assert_eq!((upper.uid(), upper.gid()), (base, base), "{name}");
        seen.push((pod, id));
    }
    // One copy of the layer on disk, still owned by 0: shared, not chowned.
    let copies = snapshot_busyboxes(&root);
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(std::fs::symlink_metadata(&copies[0]).unwrap().uid(), 0);
    for (pod, _) in &seen {
        teardown_pod(&mut env.cri, pod).await;
    }
    let ids: Vec<&str> = seen
        .iter()
        .flat_map(|(p, c)| [p.as_str(), c.as_str()])
        .collect();
    assert_eq!(env.berthd.leftovers(&ids), Vec::<String>::new());
}

#[tokio::test]
async fn bad_userns_options_are_refused_and_node_mode_is_unchanged() {
    skip_if!(skip::no_pod_env());
    let mut env = TestEnv::start_for_pods().await.unwrap();
    let ok = map(BASE_B);
    let cases = [
        (
            userns(NamespaceMode::Pod, vec![], ok.clone()),
            "userns_options.uids",
        ),
        (
            userns(NamespaceMode::Pod, ok.clone(), vec![]),
            "userns_options.gids",
        ),
        (
            userns(
                NamespaceMode::Pod,
                vec![IdMapping {
                    container_id: 0,
                    host_id: BASE_B,
                    length: 0,
                }],
                ok.clone(),
            ),
            "length is 0",
        ),
        (
            userns(
                NamespaceMode::Pod,
                vec![IdMapping {
                    container_id: 0,
                    host_id: u32::MAX - 10,
                    length: 65536,
                }],
                ok.clone(),
            ),
            "overflows",
        ),
        (
            userns(
                NamespaceMode::Pod,
                vec![
                    IdMapping {
                        container_id: 0,
                        host_id: BASE_B,
                        length: 1000,
                    },
                    IdMapping {
                        container_id: 500,
                        host_id: BASE_A,
                        length: 10,
                    },
                ],
                ok.clone(),
            ),
            "overlap",
        ),
        (
            userns(NamespaceMode::Target, ok.clone(), ok.clone()),
            "userns_options.mode",
        ),
        (
            NamespaceOption {
                network: NamespaceMode::Node as i32,
                ..userns(NamespaceMode::Pod, ok.clone(), ok.clone())
            },
            "namespace_options.network",
        ),
    ];
    for (i, (ns, want)) in cases.into_iter().enumerate() {
        let e = env
            .cri
            .runtime
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(userns_pod(&env, &format!("bad-{i}"), ns)),
                runtime_handler: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{want}: {e:?}");
        assert!(e.message().contains(want), "{want}: {e:?}");
    }
    assert!(calls::list_pods(&mut env.cri).await.is_empty());

    // A kubelet only sends hostUsers: false to a runtime that says so.
    let st = env
        .cri
        .runtime
        .status(StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    let h = &st.runtime_handlers[0];
    assert_eq!(h.name, "");
    let f = h.features.as_ref().unwrap();
    assert!(f.user_namespaces);
    assert!(f.recursive_read_only_mounts);

    // NODE: the host's user namespace, as before.
    let ns = userns(NamespaceMode::Node, vec![], vec![]);
    let pod_config = userns_pod(&env, "userns-node", ns.clone());
    let pod = env.run_pod(&pod_config).await.unwrap();
    let c = container(
        &env,
        "c",
        &ns,
        "cat /proc/self/uid_map | tr -s ' ' | sed 's/^ //'",
    );
    let id = env.run_container(&pod, &pod_config, c).await.unwrap();
    wait_exited(&mut env.cri, &id, Duration::from_secs(60)).await;
    assert_eq!(stdout(&env, "userns-node", "c"), ["0 0 4294967295"]);
    teardown_pod(&mut env.cri, &pod).await;

    // A mapped mount of a filesystem that cannot be id-mapped (procfs).
    let ns = userns(NamespaceMode::Pod, ok.clone(), ok.clone());
    let pod_config = userns_pod(&env, "userns-proc", ns.clone());
    let pod = env.run_pod(&pod_config).await.unwrap();
    let mut c = container(&env, "c", &ns, "true");
    c.mounts = vec![mount("/hostproc", Path::new("/proc"), Some(BASE_B))];
    let e = env
        .create_container(&pod, &pod_config, c)
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message()
            .contains("mounts[0].container_path \"/hostproc\""),
        "{e:?}"
    );
    assert!(calls::list_containers(&mut env.cri, None).await.is_empty());
    teardown_pod(&mut env.cri, &pod).await;
    assert_eq!(env.berthd.leftovers(&[&pod]), Vec::<String>::new());
}

/// The bench's userns lifecycle (`berth-bench --pod-network --userns`)
/// against berthd once, so the driver cannot rot between benchmark runs.
#[tokio::test]
async fn bench_userns_lifecycle_runs() {
    skip_if!(skip::no_pod_env());
    let mut env = TestEnv::start_for_pods().await.unwrap();
    let image = env.image("busybox");
    let logs = env.logs.path().join("bench");
    let outcomes = berth_integration::bench::pod_lifecycle_with(
        &mut env.cri,
        &image,
        &logs,
        2,
        true,
        Some(BASE_E),
    )
    .await;
    for (op, o) in berth_integration::bench::POD_OPS.iter().zip(&outcomes) {
        match o {
            berth_integration::bench::Outcome::Samples(s) => assert_eq!(s.len(), 2, "{op}"),
            other => panic!("{op}: {other:?}"),
        }
    }
    assert!(calls::list_pods(&mut env.cri).await.is_empty());
    // The pause init is killed, not waited for, by StopPodSandbox.
    wait_for("the pods' processes to exit", || {
        pids_mapped_to(BASE_E).is_empty()
    })
    .await;
}

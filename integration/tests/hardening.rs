//! Hardening end to end (issue 16): a store no other local user can reach,
//! refused pulls that leave nothing, a daemon that serves while it collects
//! garbage, and input that is refused at the door instead of wedging a pod.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_integration::berthd::{Berthd, BerthdOptions};
use berth_integration::env::{container_config, TestEnv, TestEnvOptions};
use berth_integration::image_builder::{Compression, Image, LayerBuilder, Platform};
use berth_integration::{calls, push, skip, skip_if, test_images};
use berth_proto::v1::*;
use sha2::Digest as _;

/// `[registry] max_unpacked_layer_size` of the refused-pulls test's berthd.
const BOMB_LIMIT: usize = 8 << 20;

/// uid/gid of `nobody`: the local user who must reach nothing in the store.
const NOBODY: &str = "65534";

/// Runs `sh -c script args...` as uid/gid 65534 with no supplementary groups
/// (util-linux's setpriv, Essential in Debian); returns its stdout.
fn as_nobody(script: &str, args: &[PathBuf]) -> String {
    let out = Command::new("setpriv")
        .args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups", "--"])
        .args(["/bin/sh", "-c", script, "sh"])
        .args(args)
        .output()
        .expect("setpriv (util-linux) must be installed");
    assert!(
        out.status.success(),
        "setpriv: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every setuid/setgid file and real device node under `dirs`, found as root
/// (overlayfs whiteouts, 0:0 character devices, are not devices).
fn dangerous_paths(dirs: &[&Path]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = dirs.iter().map(|d| d.to_path_buf()).collect();
    while let Some(p) = stack.pop() {
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let t = m.file_type();
        if t.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        } else if (t.is_file() && m.mode() & 0o6000 != 0)
            || ((t.is_char_device() || t.is_block_device()) && m.rdev() != 0)
        {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// chmod 0755 `dir` and the directories below it down to the store's own
/// (`root/snapshots/<id>`, `root/containers/<id>`; image content below is
/// left alone): a store as an older berthd or an operator's `mkdir` leaves it.
fn open_up(dir: &Path) {
    let mut stack = vec![(dir.to_path_buf(), 0)];
    while let Some((p, depth)) = stack.pop() {
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if m.is_dir() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            if depth < 3 {
                if let Ok(rd) = std::fs::read_dir(&p) {
                    stack.extend(rd.flatten().map(|e| (e.path(), depth + 1)));
                }
            }
        }
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

/// What uid 65534 can reach: each of `paths` by its full name, and whatever
/// setuid file or device node a `find` as that user lists under `dirs`.
fn reachable_by_nobody(paths: &[PathBuf], dirs: &[&Path]) -> String {
    let by_name = as_nobody(
        r#"for p; do if [ -e "$p" ] || [ -L "$p" ]; then echo "$p"; fi; done"#,
        paths,
    );
    let listed = as_nobody(
        r#"find "$@" \( -perm -4000 -o -perm -2000 -o -type b -o -type c \) -print 2>/dev/null; true"#,
        &dirs.iter().map(|d| d.to_path_buf()).collect::<Vec<_>>(),
    );
    format!("{by_name}{listed}")
}

async fn push_image(env: &TestEnv, repo: &str, img: &Image) -> String {
    push::push_image(&env.registry.host(), repo, "latest", img)
        .await
        .unwrap();
    env.registry.image_ref(repo, "latest")
}

async fn pull(env: &mut TestEnv, image: &str) -> Result<String, tonic::Status> {
    env.cri
        .image
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().image_ref)
}

#[tokio::test]
async fn setuid_files_and_devices_in_images_are_unreachable_for_other_users() {
    skip_if!(skip::no_pod_env());
    let mut env = TestEnv::start_for_pods_unpulled().await.unwrap();
    // A root made by hand (or by an older berthd): world-readable all the way.
    env.berthd.stop().await.unwrap();
    open_up(env.berthd.dir());
    env.berthd.restart().await.unwrap();
    env.cri = env.berthd.client().await.unwrap();
    let (root, state) = (
        env.berthd.root_dir().to_path_buf(),
        env.berthd.state_dir().to_path_buf(),
    );

    let mut l = LayerBuilder::new();
    l.dir("bin", 0o755).unwrap();
    l.dir("dev", 0o755).unwrap();
    l.file("bin/suid", 0o4755, b"#!/bin/sh\nid\n").unwrap();
    l.device("dev/hostnull", tar::EntryType::Char, 0o666, 1, 3)
        .unwrap();
    l.device("dev/hostdisk", tar::EntryType::Block, 0o666, 7, 0)
        .unwrap();
    let hostile = Image::build(
        "hostile",
        vec![
            test_images::busybox_layer().unwrap(),
            l.finish(Compression::Gzip).unwrap(),
        ],
        &Default::default(),
        Platform::host(),
    )
    .unwrap();
    let image = push_image(&env, "hostile", &hostile).await;
    pull(&mut env, &image).await.unwrap();

    // A container of a non-root user still starts and reads its rootfs.
    let pc = env.pod_config("nobody-store");
    let pod = env.run_pod(&pc).await.unwrap();
    let mut cc = container_config("app", &image, &["sleep", "3600"]);
    cc.linux = Some(LinuxContainerConfig {
        security_context: Some(LinuxContainerSecurityContext {
            run_as_user: Some(Int64Value { value: 1000 }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let cid = env.run_container(&pod, &pc, cc).await.unwrap();
    let check_container = |out: ExecSyncResponse| {
        assert_eq!(out.exit_code, 0, "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "1000\n/bin/suid\n");
    };
    let cmd = [
        "sh",
        "-c",
        "id -u && cat /etc/passwd >/dev/null && ls /bin/suid",
    ];
    check_container(
        calls::exec_sync(&mut env.cri, &cid, &cmd, 10)
            .await
            .unwrap(),
    );

    let dirs = [root.as_path(), state.as_path()];
    let found = dangerous_paths(&dirs);
    for want in ["snapshots/", "/rootfs/bin/suid", "/rootfs/dev/hostdisk"] {
        assert!(
            found.iter().any(|p| p.display().to_string().contains(want)),
            "no {want} among {found:?}"
        );
    }
    assert_eq!(mode(&root), 0o711);
    assert_eq!(mode(&state), 0o711);
    for sub in ["snapshots", "content", "containers", "trash"] {
        assert_eq!(mode(&root.join(sub)), 0o700, "{sub}");
    }
    assert_eq!(mode(&root.join("meta.redb")), 0o600);
    assert_eq!(reachable_by_nobody(&found, &dirs), "");

    // A store left open by an older berthd is closed again at start, with
    // the container still running through the restart.
    env.berthd.stop().await.unwrap();
    open_up(env.berthd.dir());
    std::fs::set_permissions(
        root.join("meta.redb"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    assert_ne!(
        reachable_by_nobody(&found, &dirs),
        "",
        "the oracle sees an open store"
    );
    env.berthd.restart().await.unwrap();
    env.cri = env.berthd.client().await.unwrap();
    assert_eq!(reachable_by_nobody(&found, &dirs), "");
    assert_eq!(mode(&root.join("meta.redb")), 0o600);
    check_container(
        calls::exec_sync(&mut env.cri, &cid, &cmd, 10)
            .await
            .unwrap(),
    );
    env.remove_pod(&pod).await.unwrap();
}

/// Every file and directory under `dir` with its mode, size and (for files)
/// content hash: "the store as before" is this map being equal.
fn tree(dir: &Path, skip: &[&str]) -> BTreeMap<String, (u32, u64, String)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let rel = p.strip_prefix(dir).unwrap().display().to_string();
        if skip
            .iter()
            .any(|s| rel == *s || rel.starts_with(&format!("{s}/")))
        {
            continue;
        }
        let m = std::fs::symlink_metadata(&p).unwrap();
        // A directory's size is the file system's business (ext4 never
        // shrinks one); its entries are compared one by one.
        let len = if m.is_dir() { 0 } else { m.len() };
        let hash = if m.is_file() {
            hex::encode(sha2::Sha256::digest(std::fs::read(&p).unwrap()))
        } else {
            String::new()
        };
        out.insert(rel, (m.mode(), len, hash));
        if m.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().flatten().map(|e| e.path()));
        }
    }
    out
}

async fn images(env: &mut TestEnv) -> Vec<Image2> {
    let mut v: Vec<Image2> = env
        .cri
        .image
        .list_images(ListImagesRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .images
        .into_iter()
        .map(|i| (i.id, i.repo_tags))
        .collect();
    v.sort();
    v
}
type Image2 = (String, Vec<String>);

#[tokio::test]
async fn refused_pulls_leave_the_store_as_before() {
    skip_if!(skip::no_pod_env());
    // A limit a test can pass cheaply; the default (64 GiB) works the same way.
    let mut env = TestEnv::start_with(TestEnvOptions {
        berthd: BerthdOptions::default().config(&format!(
            "[registry]\nmax_unpacked_layer_size = {BOMB_LIMIT}\n"
        )),
        ..TestEnvOptions::for_pods()
    })
    .await
    .unwrap();
    let root = env.berthd.root_dir().to_path_buf();
    let wait_trash_empty = |root: PathBuf| async move {
        let deadline = Instant::now() + Duration::from_secs(120);
        // No trash directory (an older berthd) counts as empty.
        while std::fs::read_dir(root.join("trash")).is_ok_and(|mut rd| rd.next().is_some()) {
            assert!(Instant::now() < deadline, "trash never emptied");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    wait_trash_empty(root.clone()).await;
    let before = tree(&root, &[]);
    let images_before = images(&mut env).await;

    // Each image: a good, new lower layer (unpacked and stored before the
    // upper one fails) and a bad upper layer.
    let good = |case: &str| {
        let mut l = LayerBuilder::new();
        l.file(&format!("good-{case}"), 0o644, &vec![b'x'; 300_000])
            .unwrap();
        l.finish(Compression::Gzip).unwrap()
    };
    let upper = |case: &str| {
        let mut l = LayerBuilder::new();
        l.file(&format!("upper-{case}"), 0o644, case.as_bytes())
            .unwrap();
        l.finish(Compression::Gzip).unwrap()
    };
    // 1. The registry serves other bytes than the digest says.
    let tampered = Image::build(
        "tampered",
        vec![good("tampered"), upper("tampered")],
        &Default::default(),
        Platform::host(),
    )
    .unwrap();
    // 2. The uncompressed layer is not what the config's diff id says.
    let mut wrong = upper("diff");
    wrong.diff_id = format!("sha256:{}", "0".repeat(64));
    let diff = Image::build(
        "diff",
        vec![good("diff"), wrong],
        &Default::default(),
        Platform::host(),
    )
    .unwrap();
    // 3. The upper layer writes through a symlink out of its directory.
    let mut escape = LayerBuilder::new();
    escape.symlink("evil", "/tmp").unwrap();
    escape.file("evil/berth-escaped", 0o644, b"x").unwrap();
    let escape = Image::build(
        "escape",
        vec![good("escape"), escape.finish(Compression::Gzip).unwrap()],
        &Default::default(),
        Platform::host(),
    )
    .unwrap();
    // 4. A decompression bomb: a few KiB of gzip that inflate past the limit.
    let mut bomb = LayerBuilder::new();
    bomb.file("zeros", 0o644, &vec![0; 4 * BOMB_LIMIT]).unwrap();
    let bomb = bomb.finish(Compression::Gzip).unwrap();
    assert!(
        bomb.blob.size() < 1 << 20,
        "bomb blob is {} bytes",
        bomb.blob.size()
    );
    let bomb = Image::build(
        "bomb",
        vec![good("bomb"), bomb],
        &Default::default(),
        Platform::host(),
    )
    .unwrap();

    let mut refs = Vec::new();
    for (repo, img) in [
        ("tampered", &tampered),
        ("diff", &diff),
        ("escape", &escape),
        ("bomb", &bomb),
    ] {
        refs.push((repo, push_image(&env, repo, img).await));
    }
    let victim = env.registry.blob_data_path(&tampered.layers[1].blob.digest);
    let mut bytes = std::fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&victim, bytes).unwrap();

    for (repo, image) in refs {
        let err = pull(&mut env, &image).await.unwrap_err();
        assert!(
            matches!(
                err.code(),
                tonic::Code::FailedPrecondition | tonic::Code::PermissionDenied
            ),
            "{repo}: {err:?}"
        );
        if repo == "bomb" {
            assert!(err.message().contains("max_unpacked_layer_size"), "{err:?}");
        }
        // At once: nothing of it in the store (the trash drains behind).
        let now = tree(&root, &["trash"]);
        let mut want = before.clone();
        want.retain(|k, _| k != "trash" && !k.starts_with("trash/"));
        assert_eq!(now, want, "{repo}: the store changed");
        assert_eq!(images(&mut env).await, images_before, "{repo}");
    }
    assert!(!Path::new("/tmp/berth-escaped").exists());
    wait_trash_empty(root.clone()).await;
    assert_eq!(
        tree(&root, &[]),
        before,
        "files, bytes and database as before"
    );
}

#[tokio::test]
async fn berthd_serves_while_start_up_garbage_is_still_being_collected() {
    skip_if!(skip::not_root());
    let mut b = Berthd::start().await.unwrap();
    b.stop().await.unwrap();
    let root = b.root_dir().to_path_buf();
    // Garbage a crash or a removed image left: snapshots nothing names, with
    // many small files (deleting them is real work), a half-unpacked layer
    // and a few GB of blobs.
    let mut files = 0usize;
    for d in 0..40 {
        let dir = root.join(format!("snapshots/{:064x}", d + 1));
        for sub in 0..25 {
            let s = dir.join(format!("usr/lib/{sub}"));
            std::fs::create_dir_all(&s).unwrap();
            for f in 0..40 {
                std::fs::write(s.join(format!("f{f}")), b"garbage").unwrap();
                files += 1;
            }
        }
    }
    std::fs::create_dir_all(root.join("snapshots/.tmp/unpack-x/a")).unwrap();
    for i in 0..4 {
        let f = std::fs::File::create(root.join(format!("content/sha256/{:064x}", i + 1))).unwrap();
        f.set_len(1 << 30).unwrap(); // sparse: GBs to the store, not the disk
    }
    let count = |root: &Path| {
        let mut n = 0usize;
        let mut stack = vec![
            root.join("snapshots"),
            root.join("trash"),
            root.join("content"),
        ];
        while let Some(p) = stack.pop() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                for e in rd.flatten() {
                    n += 1;
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        stack.push(e.path());
                    }
                }
            }
        }
        n
    };
    assert!(count(&root) > files);

    b.restart().await.unwrap(); // returns once Version answers
    let mut cri = b.client().await.unwrap();
    cri.runtime
        .version(VersionRequest::default())
        .await
        .unwrap();
    let left = count(&root);
    assert!(
        left > 3,
        "berthd answered only after collecting: {left} of {files} garbage entries left"
    );
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let left = count(&root);
        // What stays: the empty sha256/, ingest/ and .tmp/ directories.
        if left <= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} garbage entries never collected: {:?}",
            std::fs::read_dir(root.join("trash"))
                .map(|rd| rd.flatten().map(|e| e.path()).collect::<Vec<_>>())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = b.log();
    let serving = log.find("serving CRI").expect("serving line");
    let collected = log
        .find("image garbage collection")
        .expect("collection line");
    assert!(serving < collected, "collected before serving");
}

fn linux(c: &mut PodSandboxConfig) -> &mut LinuxPodSandboxConfig {
    c.linux.get_or_insert_with(Default::default)
}

/// Refuses `config` at RunPodSandbox with INVALID_ARGUMENT naming `field`.
async fn refused_pod(env: &mut TestEnv, config: PodSandboxConfig, field: &str) {
    let e = env
        .cri
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{field}: {e:?}");
    assert!(
        e.message().starts_with(field) && e.message().len() < 1000,
        "{field}: {}",
        &e.message()[..e.message().len().min(300)]
    );
}

#[tokio::test]
async fn bad_input_is_refused_at_the_door_naming_the_field() {
    skip_if!(skip::no_pod_env());
    let mut env = TestEnv::start_for_pods().await.unwrap();
    let state = env.berthd.state_dir().to_path_buf();
    let root = env.berthd.root_dir().to_path_buf();
    let base = env.pod_config("door");
    type Edit = Box<dyn Fn(&mut PodSandboxConfig)>;
    let sysctl = |k: &'static str| -> Edit {
        Box::new(move |c| {
            linux(c).sysctls.insert(k.into(), "1".into());
        })
    };
    let seccomp = |r: &'static str| -> Edit {
        Box::new(move |c| {
            linux(c).security_context = Some(LinuxSandboxSecurityContext {
                seccomp: Some(SecurityProfile {
                    profile_type: security_profile::ProfileType::Localhost as i32,
                    localhost_ref: r.into(),
                }),
                ..Default::default()
            })
        })
    };
    let pod_cases: Vec<(&str, Edit)> = vec![
        // The two pods that used to be accepted and never removable.
        (
            "config.port_mappings[0].protocol",
            Box::new(|c| {
                c.port_mappings.push(PortMapping {
                    protocol: 99,
                    container_port: 80,
                    ..Default::default()
                })
            }),
        ),
        (
            "config.metadata.name",
            Box::new(|c| c.metadata.as_mut().unwrap().name = "p".repeat(1 << 20)),
        ),
        (
            "config.metadata.namespace",
            Box::new(|c| c.metadata.as_mut().unwrap().namespace = "ns;IgnoreUnknown=0".into()),
        ),
        (
            "config.metadata.uid",
            Box::new(|c| c.metadata.as_mut().unwrap().uid = "u".repeat(300)),
        ),
        ("config.hostname", Box::new(|c| c.hostname = "h".repeat(65))),
        (
            "config.log_directory",
            Box::new(|c| c.log_directory = "/var/log/pods/../../../etc".into()),
        ),
        (
            "config.labels",
            Box::new(|c| {
                c.labels.insert("big".into(), "v".repeat(1 << 20));
            }),
        ),
        (
            "config.annotations",
            Box::new(|c| {
                c.annotations.insert("k".repeat(1000), "v".into());
            }),
        ),
        (
            "config.dns_config.searches",
            Box::new(|c| {
                c.dns_config = Some(DnsConfig {
                    searches: vec!["s".repeat(1 << 16)],
                    ..Default::default()
                })
            }),
        ),
        ("config.linux.sysctls", sysctl("kernel.panic")),
        ("config.linux.sysctls", sysctl("kernel.core_pattern")),
        ("config.linux.sysctls", sysctl("vm.swappiness")),
        ("config.linux.sysctls", sysctl("fs.file-max")),
        ("config.linux.sysctls", sysctl("net/ipv4/ip_forward")),
        ("config.linux.sysctls", sysctl("net.ipv4..ip_forward")),
        (
            "config.linux.security_context.seccomp.localhost_ref",
            seccomp("profiles/audit.json"),
        ),
        (
            "config.linux.security_context.seccomp.localhost_ref",
            seccomp("/var/lib/kubelet/seccomp/../../../../etc/shadow"),
        ),
        (
            "config.linux.cgroup_parent",
            Box::new(|c| linux(c).cgroup_parent = "/berth/../../system.slice".into()),
        ),
    ];
    for (field, edit) in &pod_cases {
        let mut c = base.clone();
        edit(&mut c);
        refused_pod(&mut env, c, field).await;
    }
    // Nothing left behind by any of them.
    assert!(calls::list_pods(&mut env.cri).await.is_empty());
    for sub in ["pods", "ns"] {
        let left: Vec<_> = std::fs::read_dir(state.join(sub))
            .unwrap()
            .flatten()
            .collect();
        assert!(left.is_empty(), "{sub}: {left:?}");
    }

    // A good pod; bad containers in it are refused the same way.
    let pod = env.run_pod(&base).await.unwrap();
    let image = env.image("busybox");
    type CEdit = Box<dyn Fn(&mut ContainerConfig)>;
    let container_cases: Vec<(&str, CEdit)> = vec![
        ("config.stop_signal", Box::new(|c| c.stop_signal = 99)),
        (
            "config.metadata.name",
            Box::new(|c| c.metadata.as_mut().unwrap().name = "c".repeat(1 << 20)),
        ),
        (
            "config.envs[0].key",
            Box::new(|c| {
                c.envs = vec![KeyValue {
                    key: "A=B".into(),
                    value: "1".into(),
                }]
            }),
        ),
        (
            "config.args[0]",
            Box::new(|c| c.args = vec!["a".repeat(200_000)]),
        ),
        (
            "config.mounts[0].propagation",
            Box::new(|c| {
                c.mounts = vec![Mount {
                    container_path: "/m".into(),
                    host_path: "/tmp".into(),
                    propagation: 42,
                    ..Default::default()
                }]
            }),
        ),
        (
            "config.linux.resources.unified",
            Box::new(|c| {
                c.linux = Some(LinuxContainerConfig {
                    resources: Some(LinuxContainerResources {
                        unified: [("../../cgroup.procs".to_string(), "1".to_string())].into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
            }),
        ),
        (
            "config.linux.security_context.seccomp.localhost_ref",
            Box::new(|c| {
                c.linux = Some(LinuxContainerConfig {
                    security_context: Some(LinuxContainerSecurityContext {
                        seccomp: Some(SecurityProfile {
                            profile_type: security_profile::ProfileType::Localhost as i32,
                            localhost_ref: "../x.json".into(),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
            }),
        ),
    ];
    for (field, edit) in &container_cases {
        let mut c = container_config("app", &image, &["sleep", "60"]);
        edit(&mut c);
        let e = env.create_container(&pod, &base, c).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{field}: {e:?}");
        assert!(
            e.message().starts_with(field) && e.message().len() < 1000,
            "{field}: {}",
            &e.message()[..e.message().len().min(300)]
        );
    }
    assert!(calls::list_containers(&mut env.cri, None).await.is_empty());
    let left: Vec<_> = std::fs::read_dir(root.join("containers"))
        .unwrap()
        .flatten()
        .collect();
    assert!(left.is_empty(), "containers: {left:?}");
    env.remove_pod(&pod).await.unwrap();
    assert!(calls::list_pods(&mut env.cri).await.is_empty());
}

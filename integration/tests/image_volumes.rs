//! Image volumes end to end (issue 17): a container mounts pulled images
//! read-only through `Mount.image`, as a kubelet asks for `volumes[].image`,
//! with sub paths that cannot leave the image; the image stays in use (GC
//! keeps it, RemoveImage is refused) until the container is removed, across
//! a berthd restart, and removal leaves no mount behind.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use berth_integration::calls;
use berth_integration::env::{container_config, TestEnv, TAG};
use berth_integration::image_builder::{Compression, Image, ImageConfig, LayerBuilder, Platform};
use berth_integration::{skip, skip_if};
use berth_proto::v1::*;
use sha2::Digest as _;

/// The file every volume image test reads.
const HELLO: &str = "image volume 17\n";

/// `imgvol`: two layers, so it is mounted as an overlay of lower dirs. The
/// lower one has `content/{hello.txt,gone.txt,sub/deep.txt}`, a regular
/// `plain.txt`, `content/abs -> /content/sub` (an absolute link, meant
/// inside the image), `up -> ../../../../../..` and `escape -> <../..><host>`
/// (relative links that climb out of the image if followed on the host);
/// the upper one adds `content/upper.txt` and deletes `content/gone.txt`.
fn volume_image(host_dir: &Path) -> Image {
    let mut lower = LayerBuilder::new();
    lower.dir("content", 0o755).unwrap();
    lower
        .file("content/hello.txt", 0o644, HELLO.as_bytes())
        .unwrap();
    lower.file("content/gone.txt", 0o644, b"gone\n").unwrap();
    lower.dir("content/sub", 0o755).unwrap();
    lower
        .file("content/sub/deep.txt", 0o644, b"deep\n")
        .unwrap();
    lower.file("plain.txt", 0o644, b"plain\n").unwrap();
    lower.symlink("content/abs", "/content/sub").unwrap();
    lower.symlink("up", "../../../../../..").unwrap();
    let climb = "../".repeat(16);
    let host = host_dir.display().to_string();
    lower
        .symlink(
            "escape",
            &format!("{climb}{}", host.trim_start_matches('/')),
        )
        .unwrap();
    let mut upper = LayerBuilder::new();
    upper.dir("content", 0o755).unwrap();
    upper.file("content/upper.txt", 0o644, b"upper\n").unwrap();
    upper.whiteout("content/gone.txt").unwrap();
    Image::build(
        "imgvol",
        vec![
            lower.finish(Compression::Gzip).unwrap(),
            upper.finish(Compression::Gzip).unwrap(),
        ],
        &ImageConfig::default(),
        Platform::host(),
    )
    .unwrap()
}

/// `imgvol-one`: one layer, so it is mounted as a read-only bind of its snapshot.
fn single_layer_image() -> Image {
    let mut l = LayerBuilder::new();
    l.dir("one", 0o755).unwrap();
    l.file("one/marker", 0o644, b"single layer\n").unwrap();
    Image::build(
        "imgvol-one",
        vec![l.finish(Compression::Gzip).unwrap()],
        &ImageConfig::default(),
        Platform::host(),
    )
    .unwrap()
}

/// Pushes `image` as `<repo>:latest` and pulls it; returns (reference,
/// PullImage's image_ref, which is what a kubelet puts in `Mount.image`).
async fn push_and_pull(env: &mut TestEnv, repo: &str, image: &Image) -> (String, String) {
    env.registry
        .client()
        .unwrap()
        .push_image(repo, TAG, image)
        .await
        .unwrap();
    let name = env.image(repo);
    let image_ref = env
        .cri
        .image
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: name.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .image_ref;
    (name, image_ref)
}

/// The chain ids of `image`'s layers (OCI image spec), i.e. its snapshots.
fn chain_ids(image: &Image) -> Vec<String> {
    let diff_ids: Vec<String> = image.config_json()["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    let mut out: Vec<String> = Vec::new();
    for d in diff_ids {
        let next = match out.last() {
            None => d,
            Some(prev) => format!(
                "sha256:{}",
                hex(&sha2::Sha256::digest(format!("{prev} {d}")))
            ),
        };
        out.push(next);
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The snapshot directories in the store.
fn snapshots(root: &Path) -> BTreeSet<String> {
    std::fs::read_dir(root.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect()
}

fn snapshot_dir(root: &Path, chain_id: &str) -> PathBuf {
    root.join("snapshots")
        .join(chain_id.trim_start_matches("sha256:"))
}

fn image_mount(container_path: &str, image: &str, sub_path: &str) -> Mount {
    Mount {
        container_path: container_path.into(),
        image: Some(ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        image_sub_path: sub_path.into(),
        readonly: true,
        ..Default::default()
    }
}

async fn remove_image(env: &mut TestEnv, image: &str) -> Result<(), tonic::Status> {
    env.cri
        .image
        .remove_image(RemoveImageRequest {
            image: Some(ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
        })
        .await
        .map(|_| ())
}

async fn image_status(env: &mut TestEnv, image: &str) -> Option<berth_proto::v1::Image> {
    env.cri
        .image
        .image_status(ImageStatusRequest {
            image: Some(ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .image
}

/// `sh -c script` in container `id`; returns (exit code, stdout + stderr).
async fn sh(env: &mut TestEnv, id: &str, script: &str) -> (i32, String) {
    let out = calls::exec_sync(&mut env.cri, id, &["sh", "-c", script], 20)
        .await
        .unwrap();
    (
        out.exit_code,
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// What the container sees through its four image volumes.
const READS: &str = "cat /vol/content/hello.txt /vol/content/upper.txt /deep/deep.txt \
                     /one/one/marker /up/content/hello.txt; \
                     test -e /vol/content/gone.txt && echo gone-visible; \
                     test -e /up/tmp && echo host-root-visible; echo end";
const READS_WANT: &str = "image volume 17\nupper\ndeep\nsingle layer\nimage volume 17\nend\n";

/// Host mounts of container `id`'s image volumes.
fn volume_mounts(env: &TestEnv, id: &str) -> Vec<String> {
    let needle = format!("/containers/{id}/volumes/");
    env.berthd
        .mounts()
        .into_iter()
        .filter(|m| m.contains(&needle))
        .collect()
}

#[tokio::test]
async fn image_volumes_mount_read_only_stay_in_use_and_go_with_the_container() {
    skip_if!(skip::no_pod_env());
    let mut env = TestEnv::start_for_pods().await.unwrap();
    let root = env.berthd.root_dir().to_path_buf();
    let host = tempfile::tempdir().unwrap();
    let vol_image = volume_image(host.path());
    let (vol_name, vol_ref) = push_and_pull(&mut env, "imgvol", &vol_image).await;
    let one_image = single_layer_image();
    let (one_name, _) = push_and_pull(&mut env, "imgvol-one", &one_image).await;
    let vol_chains = chain_ids(&vol_image);
    assert_eq!(vol_chains.len(), 2);
    let vol_status = image_status(&mut env, &vol_ref).await.unwrap();
    assert_eq!(vol_status.id, vol_ref, "PullImage answers the image id");

    let pc = env.pod_config("imgvol");
    let pod = env.run_pod(&pc).await.unwrap();
    let mut cc = container_config("app", &env.image("busybox"), &["sleep", "3600"]);
    cc.mounts = vec![
        // As the kubelet sends it: PullImage's image_ref.
        image_mount("/vol", &vol_ref, ""),
        // Through an absolute symlink, which means the image's /content/sub.
        image_mount("/deep", &vol_name, "content/abs"),
        image_mount("/one", &one_name, ""),
        // A relative symlink that climbs: it stops at the image's root.
        image_mount("/up", &vol_ref, "up"),
    ];
    let cid = env.create_container(&pod, &pc, cc).await.unwrap();
    calls::start_container(&mut env.cri, &cid).await;

    assert_eq!(sh(&mut env, &cid, READS).await, (0, READS_WANT.into()));
    for dir in ["/vol", "/deep", "/one", "/up"] {
        let (code, out) = sh(&mut env, &cid, &format!("touch {dir}/new")).await;
        assert_ne!(code, 0, "{dir} is writable");
        assert!(out.contains("Read-only file system"), "{dir}: {out}");
    }
    assert_eq!(
        volume_mounts(&env, &cid).len(),
        4,
        "{:?}",
        env.berthd.mounts()
    );

    // ContainerStatus lists each mount with the image it got.
    let status = calls::container_status(&mut env.cri, &cid).await;
    let paths: Vec<&str> = status
        .mounts
        .iter()
        .map(|m| m.container_path.as_str())
        .collect();
    assert_eq!(paths, ["/vol", "/deep", "/one", "/up"]);
    let vol_digest = vol_status.repo_digests[0].clone();
    for (m, image) in status.mounts.iter().zip([&vol_ref, &vol_name]) {
        let spec = m.image.as_ref().unwrap();
        assert_eq!((&spec.image, &spec.image_ref), (image, &vol_digest));
        assert!(m.readonly);
    }

    // In use: RemoveImage refused by id and by name, naming the container.
    for name in [&vol_ref, &vol_name, &one_name] {
        let e = remove_image(&mut env, name).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{name}: {e:?}");
        assert!(e.message().contains(&cid), "{}", e.message());
    }
    assert!(image_status(&mut env, &vol_ref).await.is_some());

    // A collection (RemoveImage of an unused image runs one before it
    // answers) takes that image's own snapshots and keeps the volumes'.
    let before = snapshots(&root);
    push_and_pull(
        &mut env,
        "layered",
        berth_integration::test_images::layered().unwrap(),
    )
    .await;
    assert!(snapshots(&root).len() > before.len());
    let layered = env.image("layered");
    remove_image(&mut env, &layered).await.unwrap();
    assert_eq!(snapshots(&root), before);
    for c in &vol_chains {
        assert!(snapshot_dir(&root, c).is_dir(), "{c} collected");
    }

    // A restart keeps everything: the container reads on, the image stays
    // in use (derived from the store, not from memory), the status is kept.
    env.berthd.restart().await.unwrap();
    env.cri = env.berthd.client().await.unwrap();
    assert_eq!(sh(&mut env, &cid, READS).await, (0, READS_WANT.into()));
    let e = remove_image(&mut env, &vol_ref).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    let after = calls::container_status(&mut env.cri, &cid).await;
    assert_eq!(after.mounts, status.mounts);
    for c in &vol_chains {
        assert!(snapshot_dir(&root, c).is_dir(), "{c} collected");
    }

    // An exited container still holds its volumes.
    calls::stop_container(&mut env.cri, &cid, 0).await;
    let e = remove_image(&mut env, &vol_ref).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");

    // Removal takes the mounts with it and frees the images.
    calls::remove_container(&mut env.cri, &cid).await;
    assert_eq!(env.berthd.leftovers_of(&[&cid]), Vec::<String>::new());
    assert!(volume_mounts(&env, &cid).is_empty());
    remove_image(&mut env, &vol_ref).await.unwrap();
    remove_image(&mut env, &one_name).await.unwrap();
    assert!(image_status(&mut env, &vol_ref).await.is_none());
    env.remove_pod(&pod).await.unwrap();
    assert_eq!(env.berthd.leftovers(&[&pod, &cid]), Vec::<String>::new());
}

#[tokio::test]
async fn image_sub_paths_cannot_leave_the_image_and_refusals_leave_nothing() {
    skip_if!(skip::no_pod_env());
    let mut env = TestEnv::start_for_pods().await.unwrap();
    let root = env.berthd.root_dir().to_path_buf();
    // A host directory the `escape` link names: on the host it exists.
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("secret"), "host\n").unwrap();
    let vol_image = volume_image(host.path());
    let (_, vol_ref) = push_and_pull(&mut env, "imgvol", &vol_image).await;
    let pc = env.pod_config("imgvol-bad");
    let pod = env.run_pod(&pc).await.unwrap();
    let busybox = env.image("busybox");
    let not_pulled = env.image("layered");

    let mut with_host_path = image_mount("/vol", &vol_ref, "");
    with_host_path.host_path = host.path().display().to_string();
    use tonic::Code::{InvalidArgument, NotFound};
    let cases: Vec<(&str, Vec<Mount>, tonic::Code, &str)> = vec![
        (
            // Mounted, then berth-monitor cannot put a directory over a
            // file: the create's rollback must take the volume down.
            "monitor-fails",
            vec![image_mount("/bin/sh", &vol_ref, "")],
            tonic::Code::Internal,
            "/bin/sh",
        ),
        (
            "dot-dot",
            vec![image_mount("/vol", &vol_ref, "content/../../etc")],
            InvalidArgument,
            "config.mounts[0].image_sub_path",
        ),
        (
            "absolute",
            vec![image_mount("/vol", &vol_ref, "/content")],
            InvalidArgument,
            "config.mounts[0].image_sub_path",
        ),
        (
            // Followed on the host it reaches `host`; inside the image it
            // names a directory the image does not have.
            "escaping-symlink",
            vec![
                image_mount("/vol", &vol_ref, ""),
                image_mount("/esc", &vol_ref, "escape"),
            ],
            NotFound,
            "config.mounts[1].image_sub_path",
        ),
        (
            "missing",
            vec![
                image_mount("/vol", &vol_ref, ""),
                image_mount("/x", &vol_ref, "content/nothing"),
            ],
            NotFound,
            "config.mounts[1].image_sub_path",
        ),
        (
            "file",
            vec![image_mount("/vol", &vol_ref, "plain.txt")],
            InvalidArgument,
            "not a directory",
        ),
        (
            "not-pulled",
            vec![image_mount("/vol", &not_pulled, "")],
            NotFound,
            "config.mounts[0].image.image",
        ),
        (
            "host-path",
            vec![with_host_path],
            InvalidArgument,
            "config.mounts[0].host_path",
        ),
    ];
    for (what, mounts, code, needle) in cases {
        let mut cc = container_config(what, &busybox, &["sleep", "3600"]);
        cc.mounts = mounts;
        let e = env.create_container(&pod, &pc, cc).await.unwrap_err();
        assert_eq!(e.code(), code, "{what}: {e:?}");
        assert!(e.message().contains(needle), "{what}: {}", e.message());
        // Nothing of the refused container: no mount, no directory, no record.
        let vol_mounts: Vec<String> = env
            .berthd
            .mounts()
            .into_iter()
            .filter(|m| m.contains("/volumes/"))
            .collect();
        assert_eq!(vol_mounts, Vec::<String>::new(), "{what}");
        let left: Vec<_> = std::fs::read_dir(root.join("containers"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{what}: {left:?}");
        assert!(calls::list_containers(&mut env.cri, None).await.is_empty());
    }
    // The image was never held by the refused containers.
    remove_image(&mut env, &vol_ref).await.unwrap();
    env.remove_pod(&pod).await.unwrap();
    assert_eq!(env.berthd.leftovers(&[&pod]), Vec::<String>::new());
}

/// berthd killed while CreateContainer mounts image volumes (at delays that
/// land before, during and after the mounts), then restarted: recovery
/// either keeps the container with all its volumes or rolls it back with
/// none, and removing what is kept leaves nothing.
#[tokio::test]
async fn a_create_cut_short_by_kill9_keeps_its_volumes_only_with_the_container() {
    skip_if!(skip::no_pod_env());
    let mut env = TestEnv::start_for_pods().await.unwrap();
    let root = env.berthd.root_dir().to_path_buf();
    let host = tempfile::tempdir().unwrap();
    let (vol_name, vol_ref) = push_and_pull(&mut env, "imgvol", &volume_image(host.path())).await;
    let (one_name, _) = push_and_pull(&mut env, "imgvol-one", &single_layer_image()).await;
    let pc = env.pod_config("imgvol-kill");
    let pod = env.run_pod(&pc).await.unwrap();
    let busybox = env.image("busybox");
    let mut kept = 0;
    for (n, delay_ms) in [0u64, 10, 30, 60, 100, 150, 250, 400]
        .into_iter()
        .enumerate()
    {
        let mut cc = container_config(&format!("c{n}"), &busybox, &["sleep", "3600"]);
        cc.mounts = vec![
            image_mount("/vol", &vol_ref, ""),
            image_mount("/deep", &vol_name, "content/sub"),
            image_mount("/one", &one_name, ""),
        ];
        let mut cri = env.cri.clone();
        let (pod_id, pod_config) = (pod.clone(), pc.clone());
        let call = tokio::spawn(async move {
            cri.runtime
                .create_container(CreateContainerRequest {
                    pod_sandbox_id: pod_id,
                    config: Some(cc),
                    sandbox_config: Some(pod_config),
                })
                .await
        });
        tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
        env.berthd.kill9().unwrap();
        let _ = call.await;
        env.berthd.restart().await.unwrap();
        env.cri = env.berthd.client().await.unwrap();

        let listed = calls::list_containers(&mut env.cri, None).await;
        let on_disk: Vec<String> = std::fs::read_dir(root.join("containers"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        match listed.as_slice() {
            [] => {
                let vol_mounts: Vec<String> = env
                    .berthd
                    .mounts()
                    .into_iter()
                    .filter(|m| m.contains("/volumes/"))
                    .collect();
                assert_eq!(vol_mounts, Vec::<String>::new(), "delay {delay_ms} ms");
                assert_eq!(on_disk, Vec::<String>::new(), "delay {delay_ms} ms");
            }
            [c] => {
                kept += 1;
                assert_eq!(volume_mounts(&env, &c.id).len(), 3, "delay {delay_ms} ms");
                assert_eq!(on_disk, std::slice::from_ref(&c.id), "delay {delay_ms} ms");
                let e = remove_image(&mut env, &vol_ref).await.unwrap_err();
                assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
                calls::remove_container(&mut env.cri, &c.id).await;
                assert_eq!(env.berthd.leftovers_of(&[&c.id]), Vec::<String>::new());
            }
            more => panic!("delay {delay_ms} ms: {} containers", more.len()),
        }
    }
    // How often the kill landed mid-create (for the record: the timing is
    // the machine's, the assertions above hold whatever it was).
    let rolled_back = env
        .berthd
        .log()
        .matches("rolling back container left half-created")
        .count();
    eprintln!("{kept} of 8 creates survived the kill, {rolled_back} were rolled back at restart");
    remove_image(&mut env, &vol_ref).await.unwrap();
    env.remove_pod(&pod).await.unwrap();
    assert_eq!(env.berthd.leftovers(&[&pod]), Vec::<String>::new());
}

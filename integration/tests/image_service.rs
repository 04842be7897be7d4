//! The CRI ImageService end to end: the real berthd pulling from a real local
//! registry over gRPC, as kubelet and crictl do.

use berth_integration::client::Cri;
use berth_integration::env::{TestEnv, TestEnvOptions};
use berth_integration::image_builder::{Image, Platform};
use berth_integration::registry::{Registry, RegistryOptions};
use berth_integration::{push, skip, skip_if, test_images};
use berth_proto::v1::*;

/// A plain-HTTP registry (holding the test images and `img` as `repo:tag`)
/// and a berthd that pulls from it.
async fn env_with(repo: &str, tag: &str, img: &Image) -> TestEnv {
    let env = TestEnv::start().await.unwrap();
    push::push_image(&env.registry.host(), repo, tag, img)
        .await
        .unwrap();
    env
}

fn spec(image: &str) -> Option<ImageSpec> {
    Some(ImageSpec {
        image: image.to_string(),
        ..Default::default()
    })
}

async fn pull(
    cri: &mut Cri,
    image: &str,
    auth: Option<AuthConfig>,
) -> Result<String, tonic::Status> {
    cri.image
        .pull_image(PullImageRequest {
            image: spec(image),
            auth,
            sandbox_config: None,
        })
        .await
        .map(|r| r.into_inner().image_ref)
}

async fn status(cri: &mut Cri, image: &str, verbose: bool) -> ImageStatusResponse {
    cri.image
        .image_status(ImageStatusRequest {
            image: spec(image),
            verbose,
        })
        .await
        .unwrap()
        .into_inner()
}

async fn list(cri: &mut Cri, filter: Option<&str>) -> Vec<berth_proto::v1::Image> {
    cri.image
        .list_images(ListImagesRequest {
            filter: filter.map(|f| ImageFilter { image: spec(f) }),
        })
        .await
        .unwrap()
        .into_inner()
        .images
}

async fn fs_used(cri: &mut Cri) -> (u64, u64) {
    let r = cri
        .image
        .image_fs_info(ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let fs = &r.image_filesystems[0];
    assert!(fs
        .fs_id
        .as_ref()
        .is_some_and(|id| !id.mountpoint.is_empty()));
    (
        fs.used_bytes.as_ref().unwrap().value,
        fs.inodes_used.as_ref().unwrap().value,
    )
}

fn full_size(img: &Image) -> u64 {
    img.manifest.size() + img.config.size() + img.layers_size()
}

/// GETs of `digest` the registry served (its access log names each request).
fn blob_gets(reg: &Registry, digest: &str) -> usize {
    reg.log()
        .lines()
        .filter(|l| l.contains("GET /v2/") && l.contains(&format!("/blobs/{digest}")))
        .count()
}

#[tokio::test]
async fn pull_by_tag_and_digest_then_list_status_and_stream() {
    skip_if!(skip::no_pod_env());
    let img = test_images::configured().unwrap();
    let env = env_with("configured", "v1", img).await;
    let reg = &env.registry;
    let mut cri = env.cri.clone();

    let by_tag = reg.image_ref("configured", "v1");
    let by_digest = reg.image_ref("configured", img.digest());
    assert_eq!(pull(&mut cri, &by_tag, None).await.unwrap(), img.id());
    assert_eq!(pull(&mut cri, &by_digest, None).await.unwrap(), img.id());

    let all = list(&mut cri, None).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].id, img.id());
    assert_eq!(all[0].repo_tags, std::slice::from_ref(&by_tag));
    assert_eq!(all[0].repo_digests, std::slice::from_ref(&by_digest));
    assert_eq!(all[0].size, full_size(img));
    assert_eq!(list(&mut cri, Some(&by_digest)).await.len(), 1);
    assert_eq!(list(&mut cri, Some(&img.id()[7..19])).await.len(), 1);
    assert!(list(&mut cri, Some("nothing:here")).await.is_empty());

    let st = status(&mut cri, &by_tag, true).await;
    let image = st.image.expect("image status");
    assert_eq!(image.id, img.id());
    assert_eq!(image.uid.map(|u| u.value), Some(1000));
    assert!(image.username.is_empty());
    let info: serde_json::Value = serde_json::from_str(&st.info["info"]).unwrap();
    let cfg = &info["imageSpec"]["config"];
    assert_eq!(cfg["WorkingDir"], "/work");
    assert_eq!(cfg["StopSignal"], "SIGQUIT");
    assert!(cfg["Env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "FOO=bar"));
    assert_eq!(
        info["imageSpec"]["architecture"],
        Platform::host().architecture
    );

    let unknown = status(&mut cri, &reg.image_ref("configured", "v2"), false).await;
    assert!(
        unknown.image.is_none(),
        "unknown image is an empty answer, not an error"
    );

    let mut stream = cri
        .image
        .stream_images(StreamImagesRequest { filter: None })
        .await
        .unwrap()
        .into_inner();
    let mut streamed = Vec::new();
    while let Some(page) = stream.message().await.unwrap() {
        streamed.extend(page.images);
    }
    assert_eq!(streamed, all);
}

#[tokio::test]
async fn multiarch_index_resolves_to_the_host_platform() {
    skip_if!(skip::no_pod_env());
    let env = TestEnv::start().await.unwrap();
    let reg = &env.registry;
    let index = test_images::multiarch().unwrap();
    push::push_index(&reg.host(), "multiarch", "latest", index)
        .await
        .unwrap();
    let docker = test_images::multiarch_docker().unwrap();
    push::push_index(&reg.host(), "multiarch", "docker", docker)
        .await
        .unwrap();
    let mut cri = env.cri.clone();
    for (tag, idx) in [("latest", index), ("docker", docker)] {
        let want = idx.image_for(&Platform::host()).unwrap();
        let id = pull(&mut cri, &reg.image_ref("multiarch", tag), None)
            .await
            .unwrap();
        assert_eq!(id, want.id(), "{tag}");
        let img = status(&mut cri, &id, false).await.image.unwrap();
        assert!(img
            .repo_digests
            .contains(&reg.image_ref("multiarch", idx.digest())));
    }
}

#[tokio::test]
async fn same_layers_in_another_image_are_not_fetched_or_unpacked_again() {
    skip_if!(skip::no_pod_env());
    let env = TestEnv::start().await.unwrap();
    let reg = &env.registry;
    let layered = test_images::layered().unwrap();
    let mixed = test_images::mixed().unwrap();
    push::push_image(&reg.host(), "layered", "1", layered)
        .await
        .unwrap();
    push::push_image(&reg.host(), "mixed", "1", mixed)
        .await
        .unwrap();
    let mut cri = env.cri.clone();
    let b = &env.berthd;
    pull(&mut cri, &reg.image_ref("layered", "1"), None)
        .await
        .unwrap();
    let snapshots = b.root_dir().join("snapshots");
    let count = || {
        std::fs::read_dir(&snapshots)
            .unwrap()
            .filter(|e| {
                !e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with('.')
            })
            .count()
    };
    assert_eq!(count(), layered.layers.len());
    // `mixed` has the same uncompressed layers, compressed differently: the
    // same diff ids, so the same snapshots.
    pull(&mut cri, &reg.image_ref("mixed", "1"), None)
        .await
        .unwrap();
    assert_eq!(count(), layered.layers.len(), "no layer unpacked twice");
    for l in &mixed.layers {
        if !layered
            .layers
            .iter()
            .any(|x| x.blob.digest == l.blob.digest)
        {
            assert_eq!(
                blob_gets(reg, &l.blob.digest),
                0,
                "{} fetched",
                l.blob.digest
            );
        }
    }
    assert_eq!(list(&mut cri, None).await.len(), 2);
}

#[tokio::test]
async fn tampered_blob_fails_stores_nothing_and_a_retry_works() {
    skip_if!(skip::no_pod_env());
    let img = test_images::layered().unwrap();
    let env = env_with("layered", "1", img).await;
    let reg = &env.registry;
    let victim = &img.layers.last().unwrap().blob.digest;
    let path = reg.blob_data_path(victim);
    let original = std::fs::read(&path).unwrap();
    let mut bad = original.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x55;
    std::fs::write(&path, &bad).unwrap();

    let mut cri = env.cri.clone();
    let b = &env.berthd;
    let name = reg.image_ref("layered", "1");
    let err = pull(&mut cri, &name, None).await.unwrap_err();
    assert!(
        err.message().contains(victim.as_str()) && err.message().contains("digest"),
        "{err}"
    );
    assert!(list(&mut cri, None).await.is_empty());
    assert!(status(&mut cri, &name, false).await.image.is_none());
    assert!(!b
        .root_dir()
        .join("content/sha256")
        .join(&victim[7..])
        .exists());

    std::fs::write(&path, &original).unwrap();
    assert_eq!(pull(&mut cri, &name, None).await.unwrap(), img.id());
}

#[tokio::test]
async fn ten_concurrent_pulls_fetch_each_blob_once() {
    skip_if!(skip::no_pod_env());
    let img = test_images::layered().unwrap();
    let env = env_with("layered", "1", img).await;
    let reg = &env.registry;
    let cri = env.cri.clone();
    let name = reg.image_ref("layered", "1");
    let pulls = (0..10).map(|_| {
        let mut c = Cri {
            runtime: cri.runtime.clone(),
            image: cri.image.clone(),
        };
        let name = name.clone();
        tokio::spawn(async move { pull(&mut c, &name, None).await })
    });
    for r in futures_join_all(pulls).await {
        assert_eq!(r.unwrap(), img.id());
    }
    for l in &img.layers {
        assert_eq!(blob_gets(reg, &l.blob.digest), 1, "layer {}", l.blob.digest);
    }
    assert_eq!(blob_gets(reg, img.id()), 1, "config");
}

async fn futures_join_all<T>(handles: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for h in handles.collect::<Vec<_>>() {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn remove_image_frees_space_and_is_idempotent() {
    skip_if!(skip::no_pod_env());
    let img = test_images::layered().unwrap();
    let env = env_with("layered", "1", img).await;
    let reg = &env.registry;
    let mut cri = env.cri.clone();
    let (bytes0, inodes0) = fs_used(&mut cri).await;
    let name = reg.image_ref("layered", "1");
    pull(&mut cri, &name, None).await.unwrap();
    let (bytes1, inodes1) = fs_used(&mut cri).await;
    assert!(bytes1 >= bytes0 + img.layers_size(), "{bytes0} -> {bytes1}");
    assert!(inodes1 > inodes0 + 50);
    for _ in 0..2 {
        cri.image
            .remove_image(RemoveImageRequest { image: spec(&name) })
            .await
            .unwrap();
    }
    let (bytes2, inodes2) = fs_used(&mut cri).await;
    assert_eq!(inodes2, inodes0);
    assert!(bytes2 < bytes0 + 64 * 1024, "{bytes0} -> {bytes2}");
    assert!(list(&mut cri, None).await.is_empty());
}

#[tokio::test]
async fn basic_auth_over_tls_with_the_registry_ca_in_hosts_toml() {
    skip_if!(skip::no_pod_env());
    let env = TestEnv::start_with(TestEnvOptions {
        registry: RegistryOptions::default()
            .tls()
            .basic_auth("kube", "letmein"),
        ..Default::default()
    })
    .await
    .unwrap();
    let reg = &env.registry;
    let img = test_images::busybox().unwrap();
    reg.client()
        .unwrap()
        .push_image("private/busybox", "1", img)
        .await
        .unwrap();
    // In place of the harness's hosts.toml: the CA as a file beside it,
    // named relative to it at the top level.
    let dir = env.certs_d().join(reg.host());
    std::fs::write(dir.join("ca.pem"), reg.ca_cert_pem().unwrap()).unwrap();
    std::fs::write(
        dir.join("hosts.toml"),
        format!("server = \"https://{}\"\nca = \"ca.pem\"\n", reg.host()),
    )
    .unwrap();
    let mut cri = env.cri.clone();
    let name = reg.image_ref("private/busybox", "1");
    let err = pull(&mut cri, &name, None).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err}");
    let auth = AuthConfig {
        username: "kube".into(),
        password: "letmein".into(),
        server_address: reg.host(),
        ..Default::default()
    };
    assert_eq!(pull(&mut cri, &name, Some(auth)).await.unwrap(), img.id());
}

#[tokio::test]
async fn hosts_toml_mirror_serves_registry_k8s_io_from_a_local_registry() {
    skip_if!(skip::no_pod_env());
    let pause = test_images::pause().unwrap();
    let env = env_with("pause", "3.10", pause).await;
    let reg = &env.registry;
    let dir = env.certs_d().join("registry.k8s.io");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("hosts.toml"),
        format!(
            "server = \"https://registry.k8s.io\"\n\n[host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            reg.host()
        ),
    )
    .unwrap();
    let mut cri = env.cri.clone();
    let id = pull(&mut cri, "registry.k8s.io/pause:3.10", None)
        .await
        .unwrap();
    assert_eq!(id, pause.id());
    let img = status(&mut cri, "registry.k8s.io/pause:3.10", false)
        .await
        .image
        .unwrap();
    assert_eq!(img.repo_tags, ["registry.k8s.io/pause:3.10"]);
    assert_eq!(
        img.repo_digests,
        [format!("registry.k8s.io/pause@{}", pause.digest())]
    );
}

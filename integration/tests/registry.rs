//! The harness's registry, image builder and pusher against a real docker-registry.

use berth_integration::image_builder::{
    sha256_digest, Image, Platform, MEDIA_DOCKER_LIST, MEDIA_DOCKER_MANIFEST, MEDIA_OCI_INDEX,
    MEDIA_OCI_MANIFEST,
};
use berth_integration::push::RegistryClient;
use berth_integration::registry::{Registry, RegistryOptions};
use berth_integration::{skip, skip_if, test_images};
use serde_json::Value;

fn prerequisites() -> Option<String> {
    skip::first(&[skip::no_registry(), skip::no_busybox()])
}

/// Fetches `repo:reference` and checks it is exactly `image`'s manifest, that its
/// descriptors match the image's layers and config, and that the config blob the
/// registry serves is the image's config.
async fn assert_image_served(client: &RegistryClient, repo: &str, reference: &str, image: &Image) {
    let m = client.fetch_manifest(repo, reference).await.unwrap();
    assert_eq!(m.digest, image.digest(), "{repo}:{reference}");
    assert_eq!(
        m.media_type, image.manifest.media_type,
        "{repo}:{reference}"
    );
    assert_eq!(m.data, image.manifest.data);
    let json = m.json().unwrap();
    assert_eq!(json["schemaVersion"], 2);
    assert_eq!(json["config"]["digest"], image.config.digest.as_str());
    let layers = json["layers"].as_array().unwrap();
    assert_eq!(layers.len(), image.layers.len(), "{repo}");
    for (desc, layer) in layers.iter().zip(&image.layers) {
        assert_eq!(desc["digest"], layer.blob.digest.as_str());
        assert_eq!(desc["size"], layer.blob.size());
        assert!(client.blob_exists(repo, &layer.blob.digest).await.unwrap());
    }
    let config = client.fetch_blob(repo, &image.config.digest).await.unwrap();
    assert_eq!(sha256_digest(&config), image.config.digest);
    let config: Value = serde_json::from_slice(&config).unwrap();
    let diff_ids: Vec<&str> = config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    let expected: Vec<&str> = image.layers.iter().map(|l| l.diff_id.as_str()).collect();
    assert_eq!(diff_ids, expected);
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], image.platform.architecture.as_str());
}

#[tokio::test]
async fn every_test_image_round_trips_by_tag_and_digest() {
    skip_if!(prerequisites());
    let registry = Registry::start().await.unwrap();
    let client = registry.client().unwrap();
    for (repo, image) in test_images::all_images().unwrap() {
        if repo == "large" {
            continue; // its own test below
        }
        let digest = client.push_image(repo, "v1", image).await.unwrap();
        assert_eq!(digest, image.digest());
        assert_image_served(&client, repo, "v1", image).await;
        assert_image_served(&client, repo, &digest, image).await;
    }
    // Pushing again is a no-op that yields the same digest.
    let busybox = test_images::busybox().unwrap();
    let again = client.push_image("busybox", "v1", busybox).await.unwrap();
    assert_eq!(again, busybox.digest());
}

#[tokio::test]
async fn docker_v2_manifest_keeps_its_media_types() {
    skip_if!(prerequisites());
    let registry = Registry::start().await.unwrap();
    let image = test_images::busybox_docker().unwrap();
    berth_integration::push::push_image(&registry.host(), "bb", "docker", image)
        .await
        .unwrap();
    let m = berth_integration::push::fetch_manifest(&registry.host(), "bb", "docker")
        .await
        .unwrap();
    assert_eq!(m.media_type, MEDIA_DOCKER_MANIFEST);
    let json = m.json().unwrap();
    assert_eq!(
        json["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    assert_eq!(
        json["layers"][0]["mediaType"],
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    // Same layer bytes as the OCI busybox image, different manifest.
    let oci = test_images::busybox().unwrap();
    assert_eq!(
        json["layers"][0]["digest"],
        oci.layers[0].blob.digest.as_str()
    );
    assert_ne!(m.digest, oci.digest());
}

#[tokio::test]
async fn configured_image_carries_its_runtime_config() {
    skip_if!(prerequisites());
    let registry = Registry::start().await.unwrap();
    let client = registry.client().unwrap();
    let image = test_images::configured().unwrap();
    client
        .push_image("configured", "latest", image)
        .await
        .unwrap();
    let config = client.fetch_blob("configured", image.id()).await.unwrap();
    let config: Value = serde_json::from_slice(&config).unwrap();
    let c = &config["config"];
    assert_eq!(c["User"], "1000");
    assert_eq!(c["WorkingDir"], "/work");
    assert_eq!(c["Entrypoint"], serde_json::json!(["/bin/sh", "-c"]));
    assert_eq!(c["Cmd"], serde_json::json!(["echo hello"]));
    assert_eq!(c["StopSignal"], "SIGQUIT");
    assert_eq!(c["Labels"]["org.berth.test"], "configured");
    let env: Vec<&str> = c["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(env.contains(&"FOO=bar"), "{env:?}");
    assert!(env.iter().any(|e| e.starts_with("PATH=")), "{env:?}");
}

async fn check_index(client: &RegistryClient, repo: &str, index_media: &str, manifest_media: &str) {
    let index = match index_media {
        MEDIA_OCI_INDEX => test_images::multiarch().unwrap(),
        _ => test_images::multiarch_docker().unwrap(),
    };
    let digest = client.push_index(repo, "latest", index).await.unwrap();
    assert_eq!(digest, index.digest());
    let m = client.fetch_manifest(repo, "latest").await.unwrap();
    assert_eq!(m.media_type, index_media);
    assert_eq!(m.digest, digest);
    let json = m.json().unwrap();
    let entries = json["manifests"].as_array().unwrap();
    let platforms: Vec<(String, String)> = entries
        .iter()
        .map(|e| {
            (
                e["platform"]["os"].as_str().unwrap().to_string(),
                e["platform"]["architecture"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let host = Platform::host().architecture;
    let foreign = test_images::foreign_architecture().to_string();
    assert_eq!(
        platforms,
        [
            ("linux".to_string(), host.clone()),
            ("linux".to_string(), foreign.clone())
        ]
    );
    assert!(["amd64", "arm64"]
        .iter()
        .all(|a| platforms.iter().any(|p| p.1 == *a)));
    for (entry, arch) in entries.iter().zip([host, foreign]) {
        let child_digest = entry["digest"].as_str().unwrap();
        let child = client.fetch_manifest(repo, child_digest).await.unwrap();
        assert_eq!(child.media_type, manifest_media);
        let image = index.image_for(&Platform::linux(&arch)).unwrap();
        assert_eq!(child.digest, image.digest());
        let config: Value =
            serde_json::from_slice(&client.fetch_blob(repo, image.id()).await.unwrap()).unwrap();
        assert_eq!(config["architecture"], arch.as_str());
    }
}

#[tokio::test]
async fn multiarch_index_lists_both_platforms() {
    skip_if!(prerequisites());
    let registry = Registry::start().await.unwrap();
    let client = registry.client().unwrap();
    check_index(&client, "multiarch", MEDIA_OCI_INDEX, MEDIA_OCI_MANIFEST).await;
    check_index(
        &client,
        "multiarch-docker",
        MEDIA_DOCKER_LIST,
        MEDIA_DOCKER_MANIFEST,
    )
    .await;
}

#[tokio::test]
async fn large_image_is_about_100_mb_in_the_registry() {
    skip_if!(prerequisites());
    let registry = Registry::start().await.unwrap();
    let client = registry.client().unwrap();
    let image = test_images::large().unwrap();
    client.push_image("large", "latest", image).await.unwrap();
    let m = client.fetch_manifest("large", "latest").await.unwrap();
    let total: u64 = m.json().unwrap()["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["size"].as_u64().unwrap())
        .sum();
    assert!((100_000_000..110_000_000).contains(&total), "total {total}");
    // The registry serves exactly the bytes we built.
    let layer = &image.layers[1];
    let served = client
        .fetch_blob("large", &layer.blob.digest)
        .await
        .unwrap();
    assert_eq!(sha256_digest(&served), layer.blob.digest);
}

#[tokio::test]
async fn tampered_blob_is_served_under_its_old_digest() {
    skip_if!(prerequisites());
    let registry = Registry::start().await.unwrap();
    let client = registry.client().unwrap();
    let image = test_images::layered().unwrap();
    client.push_image("layered", "latest", image).await.unwrap();
    let victim = &image.layers[2].blob;
    let path = registry.blob_data_path(&victim.digest);
    assert_eq!(std::fs::read(&path).unwrap(), victim.data);
    let mut corrupt = victim.data.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0xff;
    std::fs::write(&path, &corrupt).unwrap();
    let served = client.fetch_blob("layered", &victim.digest).await.unwrap();
    assert_eq!(served, corrupt);
    assert_ne!(sha256_digest(&served), victim.digest);
}

#[tokio::test]
async fn tls_and_basic_auth_registry_requires_both() {
    skip_if!(prerequisites());
    let options = RegistryOptions::default()
        .tls()
        .basic_auth("berth", "s3cret");
    let registry = Registry::start_with(options).await.unwrap();
    assert_eq!(registry.scheme(), "https");
    let ca = registry.ca_cert_pem().unwrap();
    assert!(ca.contains("BEGIN CERTIFICATE"));
    assert!(registry.tls().unwrap().ca_cert_path.is_file());

    let anonymous = RegistryClient::with_options(&registry.host(), Some(ca), None).unwrap();
    assert_eq!(anonymous.ping().await.unwrap(), 401);
    let wrong = RegistryClient::with_options(
        &registry.host(),
        Some(ca),
        Some(("berth".into(), "wrong".into())),
    )
    .unwrap();
    assert_eq!(wrong.ping().await.unwrap(), 401);
    let client = registry.client().unwrap();
    assert_eq!(client.ping().await.unwrap(), 200);

    // Without our CA the certificate must not verify.
    // Plain HTTP to the TLS port gets Go's 400 "client sent an HTTP request to an
    // HTTPS server", never a registry answer.
    let plain = RegistryClient::with_options(&registry.host(), None, None).unwrap();
    let answer = plain.ping().await;
    assert!(
        !matches!(answer, Ok(200) | Ok(401)),
        "plain http answered {answer:?}"
    );
    let https_without_ca = reqwest::Client::builder()
        .use_rustls_tls()
        .build()
        .unwrap()
        .get(format!("{}/v2/", registry.url()))
        .send()
        .await;
    assert!(
        https_without_ca.is_err(),
        "self-made certificate was trusted without its CA"
    );

    let image = test_images::busybox().unwrap();
    anonymous
        .push_image("busybox", "latest", image)
        .await
        .unwrap_err();
    let digest = client.push_image("busybox", "latest", image).await.unwrap();
    let m = client.fetch_manifest("busybox", &digest).await.unwrap();
    assert_eq!(m.data, image.manifest.data);
}

#[tokio::test]
async fn drop_kills_the_registry_and_removes_its_dir() {
    skip_if!(prerequisites());
    let registry = Registry::start().await.unwrap();
    let dir = registry.dir().to_path_buf();
    let host = registry.host();
    assert!(
        registry.log().contains("listening on"),
        "{}",
        registry.log()
    );
    drop(registry);
    assert!(!dir.exists(), "{} left behind", dir.display());
    let client = RegistryClient::new(&host).unwrap();
    assert!(
        client.ping().await.is_err(),
        "registry still answers on {host}"
    );
}

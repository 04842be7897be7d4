//! ImageService against a real `docker-registry` (Debian's distribution v2.8)
//! on a loopback port: pull by tag and digest, platform indexes, whiteouts in a
//! mounted rootfs, shared layers, tampered blobs, concurrent pulls, removal,
//! basic auth over TLS with a private CA, and a registry.k8s.io mirror.
//! Needs root (overlay mounts) and /usr/bin/docker-registry.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_shim::error::Error;
use berth_shim::image::{Credentials, ImageService, RegistryConfig};
use berth_shim::store::Store;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

fn digest(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

// ---------- a registry process ----------

struct Registry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    http: reqwest::Client,
    tls: bool,
    user: Option<(String, String)>,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes a CA and a 127.0.0.1 server certificate signed by it.
fn tls_files(dir: &Path) -> String {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca_cert, &ca_key)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), leaf.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    ca_cert.pem()
}

impl Registry {
    async fn start() -> Registry {
        Self::start_with(false, None).await
    }

    async fn start_with(tls: bool, user: Option<(&str, &str)>) -> Registry {
        assert!(
            Path::new(REGISTRY_BIN).exists(),
            "{REGISTRY_BIN} missing: apt-get install docker-registry"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut cfg = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
             delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("storage").display()
        );
        let mut http = reqwest::Client::builder();
        if tls {
            let ca = tls_files(dir.path());
            cfg.push_str(&format!(
                "  tls:\n    certificate: {0}/cert.pem\n    key: {0}/key.pem\n",
                dir.path().display()
            ));
            http =
                http.add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap());
        }
        if let Some((u, p)) = user {
            let hash = bcrypt::hash(p, 4).unwrap();
            std::fs::write(dir.path().join("htpasswd"), format!("{u}:{hash}\n")).unwrap();
            cfg.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: test\n    path: {}/htpasswd\n",
                dir.path().display()
            ));
        }
        std::fs::write(dir.path().join("config.yml"), cfg).unwrap();
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .env_clear()
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let r = Registry {
            child,
            port,
            dir,
            http: http.build().unwrap(),
            tls,
            user: user.map(|(u, p)| (u.to_string(), p.to_string())),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while r.http.get(r.url("/v2/")).send().await.is_err() {
            assert!(Instant::now() < deadline, "registry not ready: {}", r.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        r
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}{path}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    fn blob_path(&self, d: &str) -> PathBuf {
        let hex = &d["sha256:".len()..];
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    fn req(&self, m: reqwest::Method, url: String) -> reqwest::RequestBuilder {
        let b = self.http.request(m, url);
        match &self.user {
            Some((u, p)) => b.basic_auth(u, Some(p)),
            None => b,
        }
    }

    async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let d = digest(data);
        let resp = self
            .req(
                reqwest::Method::POST,
                self.url(&format!("/v2/{repo}/blobs/uploads/")),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202, "start upload");
        let loc = resp.headers()["location"].to_str().unwrap().to_string();
        let loc = if loc.starts_with("http") {
            loc
        } else {
            self.url(&loc)
        };
        let sep = if loc.contains('?') { '&' } else { '?' };
        let resp = self
            .req(reqwest::Method::PUT, format!("{loc}{sep}digest={d}"))
            .header("content-type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            201,
            "finish upload: {}",
            resp.text().await.unwrap()
        );
        d
    }

    async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> String {
        let resp = self
            .req(
                reqwest::Method::PUT,
                self.url(&format!("/v2/{repo}/manifests/{reference}")),
            )
            .header("content-type", media_type)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            201,
            "put manifest: {}",
            resp.text().await.unwrap()
        );
        digest(body)
    }
}

// ---------- test images ----------

enum E<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
}

#[derive(Clone, Copy)]
enum Comp {
    Gzip,
    Zstd,
    Plain,
}

struct Layer {
    blob: Vec<u8>,
    diff_id: String,
    media_type: &'static str,
}

fn layer(entries: &[E], comp: Comp) -> Layer {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        let (p, data): (&str, &[u8]) = match e {
            E::File(p, d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                (p, d)
            }
            E::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                (p, b"")
            }
        };
        h.set_size(data.len() as u64);
        b.append_data(&mut h, p, data).unwrap();
    }
    let tar = b.into_inner().unwrap();
    let diff_id = digest(&tar);
    let (blob, media_type) = match comp {
        Comp::Gzip => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&tar).unwrap();
            (
                gz.finish().unwrap(),
                "application/vnd.oci.image.layer.v1.tar+gzip",
            )
        }
        Comp::Zstd => (
            zstd::encode_all(&tar[..], 1).unwrap(),
            "application/vnd.oci.image.layer.v1.tar+zstd",
        ),
        Comp::Plain => (tar, "application/vnd.oci.image.layer.v1.tar"),
    };
    Layer {
        blob,
        diff_id,
        media_type,
    }
}

struct Pushed {
    manifest_digest: String,
    manifest_len: usize,
    config_digest: String,
    config_len: usize,
}

/// Pushes config, layers and an OCI (or Docker schema 2) manifest.
async fn push_image(
    reg: &Registry,
    repo: &str,
    tag: &str,
    layers: &[&Layer],
    config: Value,
    arch: &str,
    docker: bool,
) -> Pushed {
    let cfg = json!({
        "architecture": arch,
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()},
    });
    let cfg_bytes = serde_json::to_vec(&cfg).unwrap();
    let config_digest = reg.push_blob(repo, &cfg_bytes).await;
    let mut descs = Vec::new();
    for l in layers {
        let d = reg.push_blob(repo, &l.blob).await;
        let mt = if docker {
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        } else {
            l.media_type
        };
        descs.push(json!({"mediaType": mt, "digest": d, "size": l.blob.len()}));
    }
    let (mt, cfg_mt) = if docker {
        (
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.container.image.v1+json",
        )
    } else {
        (
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.config.v1+json",
        )
    };
    let m = json!({
        "schemaVersion": 2,
        "mediaType": mt,
        "config": {"mediaType": cfg_mt, "digest": config_digest, "size": cfg_bytes.len()},
        "layers": descs,
    });
    let body = serde_json::to_vec(&m).unwrap();
    let manifest_digest = reg.push_manifest(repo, tag, mt, &body).await;
    Pushed {
        manifest_digest,
        manifest_len: body.len(),
        config_digest,
        config_len: cfg_bytes.len(),
    }
}

/// An amd64 OCI image of `layers` with an empty runtime config.
async fn push_plain(reg: &Registry, repo: &str, tag: &str, layers: &[&Layer]) -> Pushed {
    push_image(reg, repo, tag, layers, json!({}), "amd64", false).await
}

/// An image service in `root` reading registry hosts from `root/certs.d`.
fn service_in(root: &Path) -> ImageService {
    let store = Arc::new(Store::open(&root.join("meta.redb")).unwrap());
    let cfg = RegistryConfig {
        config_path: root.join("certs.d"),
        ..Default::default()
    };
    ImageService::open(root, store, cfg).unwrap()
}

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            let n = e.as_ref().unwrap().file_name();
            !n.to_string_lossy().starts_with('.') && n != "ingest"
        })
        .count()
}

// ---------- tests ----------

#[tokio::test]
async fn pull_by_tag_and_digest_records_names_config_and_layers() {
    let reg = Registry::start().await;
    let l1 = layer(&[E::Dir("bin/"), E::File("bin/hello", b"hi")], Comp::Gzip);
    let l2 = layer(&[E::File("etc/zstd", b"z")], Comp::Zstd);
    let l3 = layer(&[E::File("etc/plain", b"p")], Comp::Plain);
    let config = json!({
        "User": "1000:1000", "Env": ["PATH=/bin", "A=b"], "Entrypoint": ["/bin/hello"], "Cmd": ["x"],
        "WorkingDir": "/w", "StopSignal": "SIGQUIT", "Labels": {"k": "v"},
        "ExposedPorts": {"80/tcp": {}}, "Volumes": {"/data": {}}
    });
    let p = push_image(
        &reg,
        "team/app",
        "v1",
        &[&l1, &l2, &l3],
        config,
        "amd64",
        false,
    )
    .await;
    let root = tempfile::tempdir().unwrap();
    let svc = service_in(root.path());

    let name = format!("{}/team/app:v1", reg.host());
    let rec = svc.pull(&name, None).await.unwrap();
    assert_eq!(rec.id, p.config_digest);
    assert_eq!(rec.repo_tags, std::slice::from_ref(&name));
    let by_digest = format!("{}/team/app@{}", reg.host(), p.manifest_digest);
    assert_eq!(rec.repo_digests, std::slice::from_ref(&by_digest));
    let layer_bytes: usize = [&l1, &l2, &l3].iter().map(|l| l.blob.len()).sum();
    assert_eq!(
        usize::try_from(rec.size).unwrap(),
        p.manifest_len + p.config_len + layer_bytes
    );
    assert_eq!(rec.config.user, "1000:1000");
    assert_eq!(rec.config.env, ["PATH=/bin", "A=b"]);
    assert_eq!(rec.config.entrypoint, ["/bin/hello"]);
    assert_eq!(rec.config.working_dir, "/w");
    assert_eq!(rec.config.stop_signal, "SIGQUIT");
    assert_eq!(rec.config.labels["k"], "v");
    assert!(
        rec.config.exposed_ports.contains_key("80/tcp") && rec.config.volumes.contains_key("/data")
    );
    assert_eq!(rec.chain_ids.len(), 3);
    assert_eq!(rec.chain_ids[0], l1.diff_id);
    assert_eq!(rec.platform, "linux/amd64");
    let snaps = root.path().join("snapshots");
    let hex = |c: &str| c["sha256:".len()..].to_string();
    assert_eq!(
        std::fs::read(snaps.join(hex(&rec.chain_ids[0])).join("bin/hello")).unwrap(),
        b"hi"
    );
    assert_eq!(
        std::fs::read(snaps.join(hex(&rec.chain_ids[1])).join("etc/zstd")).unwrap(),
        b"z"
    );
    assert_eq!(
        std::fs::read(snaps.join(hex(&rec.chain_ids[2])).join("etc/plain")).unwrap(),
        b"p"
    );
    // manifest + config + 3 layers
    assert_eq!(count(&root.path().join("content/sha256")), 5);

    let again = svc.pull(&by_digest, None).await.unwrap();
    assert_eq!(again.id, rec.id);
    assert_eq!(again.repo_tags, std::slice::from_ref(&name));
    assert_eq!(again.repo_digests, std::slice::from_ref(&by_digest));
    assert_eq!(svc.list().unwrap().len(), 1);
    for q in [
        name.as_str(),
        by_digest.as_str(),
        rec.id.as_str(),
        &rec.id[7..],
        &rec.id[7..19],
    ] {
        assert_eq!(
            svc.resolve(q).unwrap().map(|r| r.id),
            Some(rec.id.clone()),
            "{q}"
        );
    }
    assert!(svc
        .resolve(&format!("{}/team/app:v2", reg.host()))
        .unwrap()
        .is_none());
    assert!(svc.resolve("busybox").unwrap().is_none());

    // A Docker schema 2 manifest of the same layers.
    let p2 = push_image(
        &reg,
        "team/docker",
        "latest",
        &[&l1],
        json!({"Cmd": ["sh"]}),
        "amd64",
        true,
    )
    .await;
    let rec2 = svc
        .pull(&format!("{}/team/docker", reg.host()), None)
        .await
        .unwrap();
    assert_eq!(rec2.id, p2.config_digest);
    assert_eq!(
        rec2.repo_tags,
        [format!("{}/team/docker:latest", reg.host())]
    );

    let missing = svc
        .pull(&format!("{}/team/app:nope", reg.host()), None)
        .await
        .unwrap_err();
    assert!(matches!(missing, Error::NotFound(_)), "{missing}");
}

#[tokio::test]
async fn index_resolves_to_this_nodes_platform() {
    let reg = Registry::start().await;
    let l = layer(&[E::File("f", b"amd")], Comp::Gzip);
    let la = layer(&[E::File("f", b"arm")], Comp::Gzip);
    let amd = push_plain(&reg, "multi", "amd", &[&l]).await;
    let arm = push_image(&reg, "multi", "arm", &[&la], json!({}), "arm64", false).await;
    let desc = |p: &Pushed, arch: &str| {
        json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": p.manifest_digest,
               "size": p.manifest_len, "platform": {"os": "linux", "architecture": arch}})
    };
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [desc(&arm, "arm64"), desc(&amd, "amd64")]
    }))
    .unwrap();
    let index_digest = reg
        .push_manifest(
            "multi",
            "latest",
            "application/vnd.oci.image.index.v1+json",
            &index,
        )
        .await;
    let arm_only = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": [desc(&arm, "arm64")]
    }))
    .unwrap();
    reg.push_manifest(
        "multi",
        "armonly",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        &arm_only,
    )
    .await;

    let root = tempfile::tempdir().unwrap();
    let svc = service_in(root.path());
    let rec = svc
        .pull(&format!("{}/multi", reg.host()), None)
        .await
        .unwrap();
    assert_eq!(
        std::env::consts::ARCH,
        "x86_64",
        "test written for amd64 nodes"
    );
    assert_eq!(rec.id, amd.config_digest);
    assert_eq!(rec.manifest_digest, amd.manifest_digest);
    assert_eq!(
        rec.repo_digests,
        [format!("{}/multi@{index_digest}", reg.host())]
    );
    let err = svc
        .pull(&format!("{}/multi:armonly", reg.host()), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::NotFound(_)) && err.to_string().contains("linux/amd64"),
        "{err}"
    );
}

#[tokio::test]
async fn whiteouts_apply_in_prepared_rootfs_and_release_cleans_up() {
    let reg = Registry::start().await;
    let base = layer(
        &[
            E::Dir("etc/"),
            E::File("etc/a", b"a"),
            E::File("etc/b", b"b"),
            E::Dir("d/"),
            E::File("d/x", b"x"),
        ],
        Comp::Gzip,
    );
    let top = layer(
        &[
            E::File("etc/.wh.a", b""),
            E::Dir("d/"),
            E::File("d/.wh..wh..opq", b""),
            E::File("d/z", b"z"),
        ],
        Comp::Gzip,
    );
    push_plain(&reg, "wh", "1", &[&base, &top]).await;
    let root = tempfile::tempdir().unwrap();
    let svc = service_in(root.path());
    let rec = svc
        .pull(&format!("{}/wh:1", reg.host()), None)
        .await
        .unwrap();

    let rootfs = svc.prepare_rootfs(&rec.id, "c1").unwrap();
    assert_eq!(rootfs, root.path().join("containers/c1/rootfs"));
    assert_eq!(
        svc.prepare_rootfs(&rec.id, "c1").unwrap(),
        rootfs,
        "idempotent"
    );
    assert!(!rootfs.join("etc/a").exists(), "whiteout hides etc/a");
    assert_eq!(std::fs::read(rootfs.join("etc/b")).unwrap(), b"b");
    let mut d: Vec<_> = std::fs::read_dir(rootfs.join("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    d.sort();
    assert_eq!(d, ["z"], "opaque dir hides the lower layer's entries");
    std::fs::write(rootfs.join("new"), vec![7u8; 64 * 1024]).unwrap();
    assert!(root.path().join("containers/c1/upper/new").exists());
    let usage = svc.fs_info().unwrap();
    assert!(usage.containers.used_bytes >= 64 * 1024, "{usage:?}");
    assert_eq!(
        usage.containers.mountpoint,
        root.path(),
        "same filesystem as the images"
    );

    // Removing the image keeps the snapshots the container stacks.
    svc.remove(&rec.id).await.unwrap();
    assert!(svc.list().unwrap().is_empty());
    assert_eq!(count(&root.path().join("snapshots")), 2);
    assert_eq!(std::fs::read(rootfs.join("etc/b")).unwrap(), b"b");
    assert!(svc.prepare_rootfs(&rec.id, "c2").is_err(), "image is gone");

    svc.release_rootfs("c1").unwrap();
    assert!(!root.path().join("containers/c1").exists());
    svc.release_rootfs("c1").unwrap();
    // The collection runs in the background, off the RPC's path.
    wait_collected(&svc).await;
    assert_eq!(
        count(&root.path().join("snapshots")),
        0,
        "released snapshots are collected"
    );
    assert_eq!(count(&root.path().join("content/sha256")), 0);
}

#[tokio::test]
async fn shared_base_layer_is_downloaded_and_unpacked_once() {
    let reg = Registry::start().await;
    let base = layer(&[E::File("base", &[1u8; 100_000])], Comp::Gzip);
    let a = layer(&[E::File("a", b"a")], Comp::Gzip);
    let b = layer(&[E::File("b", b"b")], Comp::Gzip);
    push_image(
        &reg,
        "a",
        "1",
        &[&base, &a],
        json!({"Cmd": ["a"]}),
        "amd64",
        false,
    )
    .await;
    push_image(
        &reg,
        "b",
        "1",
        &[&base, &b],
        json!({"Cmd": ["b"]}),
        "amd64",
        false,
    )
    .await;
    let root = tempfile::tempdir().unwrap();
    let svc = service_in(root.path());
    let ra = svc
        .pull(&format!("{}/a:1", reg.host()), None)
        .await
        .unwrap();
    assert_eq!(svc.stats().blob_downloads, 3);
    let base_snap = root.path().join("snapshots").join(&ra.chain_ids[0][7..]);
    let ino =
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(base_snap.join("base")).unwrap());
    let rb = svc
        .pull(&format!("{}/b:1", reg.host()), None)
        .await
        .unwrap();
    assert_eq!(ra.chain_ids[0], rb.chain_ids[0]);
    assert_eq!(
        svc.stats().blob_downloads,
        5,
        "only b's config and top layer are fetched"
    );
    assert_eq!(count(&root.path().join("snapshots")), 3);
    let ino2 =
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(base_snap.join("base")).unwrap());
    assert_eq!(ino, ino2, "base snapshot was not unpacked again");
    // Removing one image keeps the shared base for the other.
    svc.remove(&format!("{}/a:1", reg.host())).await.unwrap();
    assert_eq!(count(&root.path().join("snapshots")), 2);
    assert!(base_snap.join("base").exists());
}

#[tokio::test]
async fn tampered_blob_fails_names_the_blob_and_stores_nothing_then_retry_works() {
    let reg = Registry::start().await;
    let l = layer(&[E::File("data", &[5u8; 50_000])], Comp::Gzip);
    let ok = layer(&[E::File("ok", b"fine")], Comp::Gzip);
    push_plain(&reg, "t", "1", &[&ok, &l]).await;
    let layer_digest = digest(&l.blob);
    let path = reg.blob_path(&layer_digest);
    let original = std::fs::read(&path).unwrap();
    let mut bad = original.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    std::fs::write(&path, &bad).unwrap();

    let root = tempfile::tempdir().unwrap();
    let svc = service_in(root.path());
    let name = format!("{}/t:1", reg.host());
    let err = svc.pull(&name, None).await.unwrap_err().to_string();
    assert!(
        err.contains(&layer_digest) && err.contains("digest mismatch"),
        "{err}"
    );
    assert!(svc.list().unwrap().is_empty());
    assert!(!root
        .path()
        .join("content/sha256")
        .join(&layer_digest[7..])
        .exists());
    // A refused pull leaves nothing: the intact layer it had already
    // unpacked goes too (into the trash, deleted in the background).
    assert_eq!(
        count(&root.path().join("snapshots")),
        0,
        "the intact layer a refused pull unpacked is undone"
    );
    assert_eq!(
        std::fs::read_dir(root.path().join("snapshots/.tmp"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(root.path().join("content/ingest"))
            .unwrap()
            .count(),
        0
    );

    std::fs::write(&path, &original).unwrap();
    let rec = svc.pull(&name, None).await.unwrap();
    assert_eq!(rec.chain_ids.len(), 2);
}

#[tokio::test]
async fn ten_concurrent_pulls_download_each_blob_once() {
    let reg = Registry::start().await;
    let layers: Vec<Layer> = (0..3)
        .map(|i| {
            layer(
                &[E::File("f", &vec![u8::try_from(i).unwrap(); 300_000])],
                Comp::Gzip,
            )
        })
        .collect();
    push_plain(&reg, "c", "1", &layers.iter().collect::<Vec<_>>()).await;
    let root = tempfile::tempdir().unwrap();
    let svc = Arc::new(service_in(root.path()));
    let name = format!("{}/c:1", reg.host());
    let pulls = (0..10).map(|_| {
        let svc = svc.clone();
        let name = name.clone();
        tokio::spawn(async move { svc.pull(&name, None).await })
    });
    let results = futures::future::join_all(pulls).await;
    let ids: std::collections::BTreeSet<String> = results
        .into_iter()
        .map(|r| r.unwrap().unwrap().id)
        .collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(svc.stats().blob_downloads, 4, "one config and three layers");
    // The registry agrees: each layer blob was served once.
    for l in &layers {
        let d = digest(&l.blob);
        let gets = reg
            .log()
            .lines()
            .filter(|line| line.contains(&format!("GET /v2/c/blobs/{d}")))
            .count();
        assert_eq!(gets, 1, "layer {d} fetched {gets} times");
    }
}

#[tokio::test]
async fn remove_frees_space_and_is_idempotent() {
    let reg = Registry::start().await;
    let l = layer(&[E::File("big", &vec![9u8; 2_000_000])], Comp::Plain);
    push_plain(&reg, "r", "1", &[&l]).await;
    let root = tempfile::tempdir().unwrap();
    let svc = service_in(root.path());
    let before = svc.fs_info().unwrap();
    let name = format!("{}/r:1", reg.host());
    svc.pull(&name, None).await.unwrap();
    let pulled = svc.fs_info().unwrap();
    assert!(
        pulled.images.used_bytes >= before.images.used_bytes + 2 * 2_000_000,
        "{pulled:?}"
    );
    assert!(pulled.images.inodes_used > before.images.inodes_used);
    assert_eq!(pulled.images.mountpoint, root.path());
    svc.remove(&name).await.unwrap();
    let after = svc.fs_info().unwrap();
    assert!(
        after.images.used_bytes < before.images.used_bytes + 64 * 1024,
        "{after:?} vs {before:?}"
    );
    assert_eq!(after.images.inodes_used, before.images.inodes_used);
    assert!(svc.list().unwrap().is_empty());
    svc.remove(&name).await.unwrap();
    svc.remove("sha256:0123").await.unwrap();
}

#[tokio::test]
async fn basic_auth_over_tls_with_a_private_ca() {
    let reg = Registry::start_with(true, Some(("alice", "s3cret"))).await;
    let l = layer(&[E::File("secret", b"s")], Comp::Gzip);
    push_plain(&reg, "private/app", "1", &[&l]).await;
    let root = tempfile::tempdir().unwrap();
    let certs = root.path().join("certs.d").join(reg.host());
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(reg.dir.path().join("ca.pem"), certs.join("ca.pem")).unwrap();
    std::fs::write(
        certs.join("hosts.toml"),
        format!("server = \"https://{}\"\nca = \"ca.pem\"\n", reg.host()),
    )
    .unwrap();
    let svc = service_in(root.path());
    let name = format!("{}/private/app:1", reg.host());

    let err = svc.pull(&name, None).await.unwrap_err();
    assert!(matches!(err, Error::Unauthenticated(_)), "{err}");
    let wrong = Credentials {
        username: "alice".into(),
        password: "nope".into(),
        ..Default::default()
    };
    let err = svc.pull(&name, Some(wrong)).await.unwrap_err();
    assert!(matches!(err, Error::Unauthenticated(_)), "{err}");
    let good = Credentials {
        username: "alice".into(),
        password: "s3cret".into(),
        ..Default::default()
    };
    svc.pull(&name, Some(good)).await.unwrap();
    svc.remove(&name).await.unwrap();
    use base64::Engine as _;
    let blob = Credentials {
        auth: base64::engine::general_purpose::STANDARD.encode("alice:s3cret"),
        ..Default::default()
    };
    svc.pull(&name, Some(blob)).await.unwrap();

    // Without the CA the certificate is refused.
    std::fs::remove_dir_all(&certs).unwrap();
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::write(
        certs.join("hosts.toml"),
        format!("server = \"https://{}\"\n", reg.host()),
    )
    .unwrap();
    let err = svc.pull(&name, None).await.unwrap_err();
    assert!(
        matches!(err, Error::Unavailable(_)) && err.to_string().contains("certificate"),
        "{err}"
    );
    // skip_verify accepts it.
    std::fs::write(
        certs.join("hosts.toml"),
        format!("server = \"https://{}\"\nskip_verify = true\n", reg.host()),
    )
    .unwrap();
    let good = Credentials {
        username: "alice".into(),
        password: "s3cret".into(),
        ..Default::default()
    };
    svc.pull(&name, Some(good)).await.unwrap();
}

#[tokio::test]
async fn mirror_serves_registry_k8s_io_from_a_local_http_registry() {
    let reg = Registry::start().await;
    let l = layer(&[E::File("pause", b"#!")], Comp::Gzip);
    let p = push_image(
        &reg,
        "pause",
        "3.10",
        &[&l],
        json!({"Entrypoint": ["/pause"]}),
        "amd64",
        false,
    )
    .await;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("certs.d/registry.k8s.io");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("hosts.toml"),
        format!(
            "server = \"https://registry.k8s.io\"\n[host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            reg.host()
        ),
    )
    .unwrap();
    let svc = service_in(root.path());
    let rec = svc.pull("registry.k8s.io/pause:3.10", None).await.unwrap();
    assert_eq!(rec.id, p.config_digest);
    assert_eq!(rec.repo_tags, ["registry.k8s.io/pause:3.10"]);
    assert_eq!(
        rec.repo_digests,
        [format!("registry.k8s.io/pause@{}", p.manifest_digest)]
    );
    assert!(
        reg.log().contains("ns=registry.k8s.io"),
        "mirror requests carry ns="
    );
}

#[tokio::test]
async fn dropped_pull_leaves_nothing_visible_and_a_retry_works() {
    let reg = Registry::start().await;
    // Incompressible, so the download takes a while.
    let mut noise = vec![0u8; 24 << 20];
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x.to_le_bytes()[0];
    }
    let l = layer(&[E::File("noise", &noise)], Comp::Gzip);
    push_plain(&reg, "slow", "1", &[&l]).await;
    let root = tempfile::tempdir().unwrap();
    let svc = service_in(root.path());
    let name = format!("{}/slow:1", reg.host());
    let r = tokio::time::timeout(Duration::from_millis(150), svc.pull(&name, None)).await;
    assert!(r.is_err(), "pull should still be running after 150ms");
    assert!(svc.list().unwrap().is_empty());
    assert!(svc.resolve(&name).unwrap().is_none());
    assert!(!root
        .path()
        .join("content/sha256")
        .join(&digest(&l.blob)[7..])
        .exists());
    assert_eq!(count(&root.path().join("snapshots")), 0);
    let rec = svc.pull(&name, None).await.unwrap();
    let snap = root.path().join("snapshots").join(&rec.chain_ids[0][7..]);
    assert_eq!(
        std::fs::read(snap.join("noise")).unwrap().len(),
        noise.len()
    );
}

#[tokio::test]
async fn reopen_keeps_images_and_sweeps_crash_leftovers() {
    let reg = Registry::start().await;
    let l = layer(&[E::File("kept", b"k")], Comp::Gzip);
    push_plain(&reg, "keep", "1", &[&l]).await;
    let root = tempfile::tempdir().unwrap();
    let name = format!("{}/keep:1", reg.host());
    let rec = {
        let svc = service_in(root.path());
        svc.pull(&name, None).await.unwrap()
    };
    // What a crash mid-pull leaves: a half-unpacked layer, a partial blob,
    // and a complete blob and snapshot no record names yet.
    let r = root.path();
    std::fs::create_dir_all(r.join("snapshots/.tmp/unpack-x/etc")).unwrap();
    std::fs::write(r.join("content/ingest/.tmpblob"), b"partial").unwrap();
    let orphan = format!("{:064x}", 7);
    std::fs::write(r.join("content/sha256").join(&orphan), b"x").unwrap();
    std::fs::create_dir(r.join("snapshots").join(&orphan)).unwrap();

    let svc = service_in(root.path());
    assert_eq!(svc.resolve(&name).unwrap().unwrap(), rec);
    // berthd starts the collection once it serves (never before).
    svc.collect_in_background();
    wait_collected(&svc).await;
    assert_eq!(
        std::fs::read_dir(r.join("snapshots/.tmp")).unwrap().count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(r.join("content/ingest")).unwrap().count(),
        0
    );
    assert!(!r.join("content/sha256").join(&orphan).exists());
    assert!(!r.join("snapshots").join(&orphan).exists());
    let rootfs = svc.prepare_rootfs(&rec.id, "after-restart").unwrap();
    assert_eq!(std::fs::read(rootfs.join("kept")).unwrap(), b"k");
    svc.release_rootfs("after-restart").unwrap();
}

/// Waits until the image service's background collection has run and its
/// trash is empty (the condition, not a time; fails after 30 s).
async fn wait_collected(svc: &ImageService) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while svc.collecting() {
        assert!(
            std::time::Instant::now() < deadline,
            "background collection still running after 30 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

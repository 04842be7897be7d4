//! The image service: pull, resolve, list and remove images, and prepare
//! container root filesystems from them.
//!
//! On disk under the daemon root: `content/sha256/<hex>` (verified blobs),
//! `snapshots/<chain-id hex>/` (one unpacked layer each, shared between
//! images), `containers/<id>/{upper,work,rootfs}`. Records live in `meta.redb`
//! (see [`store`]).
//!
//! A pull resolves the reference to this node's platform manifest, fetches
//! the config, then downloads every missing layer concurrently (bounded by
//! `max_concurrent_downloads`): each layer's bytes are hashed and written to the
//! content store and decompressed and unpacked in the same pass on a blocking
//! thread; blob and snapshot become visible only after both the blob digest and
//! the diff id verified. The image record is written last, in one transaction.
//! Work on one layer or blob is serialised by a per-key lock, so concurrent
//! pulls of images sharing a layer download and unpack it once.
//!
//! Garbage collection deletes blobs and snapshots no record or container
//! names. It takes the write side of a lock every pull holds for reading, so it
//! never deletes what a running pull has just written; when a pull is running
//! it is deferred to the end of the pull. It never deletes on an RPC's path:
//! under the lock it only renames garbage into `trash/` (one syscall per
//! snapshot or blob, see [`trash`]); the deletion itself runs on a background
//! task. At start berthd serves first and collects in the background; after
//! RemoveContainer the collection is in the background too; RemoveImage and a
//! failed pull move their garbage aside before they answer, so a refused pull
//! leaves nothing in `snapshots/` or `content/` once it has answered.

pub mod content;
pub mod hosts;
pub mod reference;
pub mod registry;
pub mod snapshot;
pub mod store;
pub mod trash;
pub mod unpack;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::{OwnedRwLockWriteGuard, RwLock, Semaphore};

use crate::error::{Error, Result};
use crate::store::{dirs, Store};

pub use hosts::RegistryConfig;
pub use reference::Reference;
pub use registry::Credentials;
pub use store::{ImageConfig, ImageRecord};

use content::ContentStore;
use registry::Session;
use snapshot::Snapshots;

const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
const MANIFEST_TYPES: [&str; 2] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// Disk use of one directory tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirUsage {
    /// The directory measured (reported as the CRI mount point).
    pub mountpoint: PathBuf,
    /// Bytes allocated.
    pub used_bytes: u64,
    /// Inodes used.
    pub inodes_used: u64,
}

/// What ImageFsInfo reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsUsage {
    /// Content store and snapshots.
    pub images: DirUsage,
    /// Containers' writable layers.
    pub containers: DirUsage,
}

/// Counters for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PullStats {
    /// Blobs fetched from registries (configs and layers).
    pub blob_downloads: u64,
    /// Layer bytes fetched from registries.
    pub bytes_downloaded: u64,
}

/// The image store and registry client of berthd.
pub struct ImageService {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    store: Arc<Store>,
    cfg: RegistryConfig,
    content: ContentStore,
    snapshots: Snapshots,
    http: reqwest::Client,
    downloads: Semaphore,
    gc: Arc<RwLock<()>>,
    gc_pending: AtomicBool,
    /// Where garbage waits for its deletion off the RPC path.
    trash: trash::Trash,
    /// A background collection is wanted ([`Inner::request_gc`]).
    gc_requested: AtomicBool,
    /// The trash wants emptying ([`Inner::request_trash_emptying`]).
    trash_requested: AtomicBool,
    /// The background collector task runs.
    gc_worker: AtomicBool,
    /// Set by garbage collection when a container keeps snapshots that no image
    /// records: releasing a rootfs collects only then, so RemoveContainer does
    /// not walk the store in the common case.
    orphans: AtomicBool,
    /// Serialises rootfs references against garbage collection.
    refs: Mutex<()>,
    /// Mount container layers with overlayfs `volatile` (see
    /// [`snapshot::mount_overlay`]).
    volatile_rootfs: AtomicBool,
    locks: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
    blob_downloads: AtomicU64,
    bytes_downloaded: AtomicU64,
}

#[derive(Debug, Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Debug, Deserialize)]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    variant: String,
}

#[derive(Debug, Deserialize)]
struct Index {
    manifests: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
struct Manifest {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    variant: String,
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    config: Option<ImageConfig>,
    rootfs: RootFs,
}

#[derive(Debug, Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

/// This node's platform in OCI terms: (architecture, variant).
pub fn node_platform() -> (&'static str, &'static str) {
    match std::env::consts::ARCH {
        "x86_64" => ("amd64", ""),
        "aarch64" => ("arm64", "v8"),
        "arm" => ("arm", "v7"),
        "x86" => ("386", ""),
        "powerpc64" => ("ppc64le", ""),
        "s390x" => ("s390x", ""),
        "riscv64" => ("riscv64", ""),
        other => (other, ""),
    }
}

fn select_platform<'a>(list: &'a [Descriptor], image: &str) -> Result<&'a Descriptor> {
    let (arch, variant) = node_platform();
    let matches = |d: &&Descriptor| {
        d.platform.as_ref().is_some_and(|p| {
            p.os == "linux"
                && p.architecture == arch
                && (p.variant.is_empty() || variant.is_empty() || p.variant == variant)
        })
    };
    // Prefer the exact variant, then any variant of our architecture.
    list.iter()
        .filter(matches)
        .find(|d| d.platform.as_ref().is_some_and(|p| p.variant == variant))
        .or_else(|| list.iter().find(matches))
        .ok_or_else(|| {
            Error::NotFound(format!(
                "image {image}: no manifest for platform linux/{arch}"
            ))
        })
}

fn parse_json<'a, T: Deserialize<'a>>(bytes: &'a [u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::FailedPrecondition(format!("{what}: invalid json: {e}")))
}

fn check_digest(d: &str, what: &str) -> Result<()> {
    reference::validate_digest(d).map_err(|e| Error::FailedPrecondition(format!("{what}: {e}")))
}

/// Reads a layer from the download channel, storing every byte in the blob writer.
struct Tee {
    rx: tokio::sync::mpsc::Receiver<std::result::Result<Bytes, String>>,
    cur: Bytes,
    blob: content::BlobWriter,
}

impl Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => {
                    io::Write::write_all(&mut self.blob, &b)?;
                    self.cur = b;
                }
                Some(Err(e)) => return Err(io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

impl ImageService {
    /// Opens the image store under `root`. Leftovers of a crash are moved to
    /// the trash; call [`ImageService::collect_in_background`] once serving.
    pub fn open(root: &Path, store: Arc<Store>, cfg: RegistryConfig) -> Result<ImageService> {
        let trash = trash::Trash::open(&root.join("trash"))?;
        // Half-unpacked layers and half-written blobs can be GBs: out of the
        // way with a rename now, deleted later.
        for leftovers in [root.join("snapshots/.tmp"), root.join("content/ingest")] {
            trash.stash(&leftovers)?;
        }
        let content = ContentStore::open(&root.join("content"))?;
        let snapshots = Snapshots::open(&root.join("snapshots"))?;
        let containers = root.join("containers");
        dirs::ensure(&containers, dirs::PRIVATE)?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| Error::Internal(format!("http client: {e}")))?;
        let inner = Inner {
            root: root.to_path_buf(),
            store,
            downloads: Semaphore::new(cfg.max_concurrent_downloads.max(1)),
            cfg,
            content,
            snapshots,
            http,
            gc: Arc::new(RwLock::new(())),
            gc_pending: AtomicBool::new(false),
            trash,
            gc_requested: AtomicBool::new(false),
            trash_requested: AtomicBool::new(false),
            gc_worker: AtomicBool::new(false),
            orphans: AtomicBool::new(false),
            refs: Mutex::new(()),
            volatile_rootfs: AtomicBool::new(false),
            locks: Mutex::new(HashMap::new()),
            blob_downloads: AtomicU64::new(0),
            bytes_downloaded: AtomicU64::new(0),
        };
        Ok(ImageService {
            inner: Arc::new(inner),
        })
    }

    /// Collects garbage (and empties the trash) on a background task; returns
    /// at once. berthd calls it when it starts serving.
    pub fn collect_in_background(&self) {
        Inner::request_gc(&self.inner);
    }

    /// Whether a background collection is running or the trash holds
    /// something still to delete.
    pub fn collecting(&self) -> bool {
        self.inner.gc_worker.load(Ordering::SeqCst) || !self.inner.trash.is_empty()
    }

    /// Pulls `image` for this node's platform and records it.
    pub async fn pull(&self, image: &str, auth: Option<Credentials>) -> Result<ImageRecord> {
        let started = std::time::Instant::now();
        let r = Reference::parse(image);
        let res = match r {
            Ok(r) => self.pull_parsed(r, auth).await,
            Err(e) => Err(e),
        };
        crate::metrics::global().pull_done(&res, started.elapsed());
        res
    }

    async fn pull_parsed(&self, r: Reference, auth: Option<Credentials>) -> Result<ImageRecord> {
        let guard = self.inner.gc.clone().read_owned().await;
        let res = self.pull_locked(&r, auth).await;
        drop(guard);
        if let Err(e) = &res {
            tracing::warn!(image = %r, error = %e, "pull failed");
            // Undo at once what the refused pull added (layers already
            // unpacked, blobs already stored): nothing names them, so they are
            // garbage. Moving them aside is cheap; when another pull holds the
            // lock, the collection runs when the last one ends.
            self.gc_soon().await;
        } else if self.inner.gc_pending.load(Ordering::SeqCst) {
            Inner::request_gc(&self.inner);
        }
        res
    }

    async fn pull_locked(&self, r: &Reference, auth: Option<Credentials>) -> Result<ImageRecord> {
        let inner = &self.inner;
        let endpoints = hosts::endpoints(&inner.cfg.config_path, &r.registry)?;
        let session = Session::new(&r.repository, endpoints, &inner.http, auth)?;
        let image = r.to_string();
        let top = session.manifest(r.object()).await?;
        let top_digest = top.digest.clone();
        let mut small = Vec::new();
        let looks_like_index =
            top.media_type.is_empty() && top.bytes.windows(12).any(|w| w == b"\"manifests\"");
        let manifest = if INDEX_TYPES.contains(&top.media_type.as_str()) || looks_like_index {
            let idx: Index = parse_json(&top.bytes, &format!("index {}", top.digest))?;
            let chosen = select_platform(&idx.manifests, &image)?;
            check_digest(&chosen.digest, "index entry")?;
            let m = session.manifest(&chosen.digest).await?;
            small.push((top.digest, top.bytes));
            m
        } else {
            top
        };
        if !manifest.media_type.is_empty()
            && !MANIFEST_TYPES.contains(&manifest.media_type.as_str())
        {
            return Err(Error::Unimplemented(format!(
                "image {image}: unsupported manifest media type {}",
                manifest.media_type
            )));
        }
        let m: Manifest = parse_json(&manifest.bytes, &format!("manifest {}", manifest.digest))?;
        check_digest(&m.config.digest, "manifest config")?;
        for l in &m.layers {
            check_digest(&l.digest, "manifest layer")?;
            if !l.media_type.is_empty() && !l.media_type.contains("tar") {
                return Err(Error::Unimplemented(format!(
                    "image {image}: layer {} has unsupported media type {}",
                    l.digest, l.media_type
                )));
            }
        }
        let config_bytes = self.config_blob(&session, &m.config.digest).await?;
        let cf: ConfigFile = parse_json(&config_bytes, &format!("config {}", m.config.digest))?;
        if cf.rootfs.diff_ids.len() != m.layers.len() {
            return Err(Error::FailedPrecondition(format!(
                "image {image}: config lists {} diff ids for {} layers",
                cf.rootfs.diff_ids.len(),
                m.layers.len()
            )));
        }
        for d in &cf.rootfs.diff_ids {
            check_digest(d, "config diff id")?;
        }
        let chains = snapshot::chain_ids(&cf.rootfs.diff_ids);
        let jobs = m
            .layers
            .iter()
            .zip(&cf.rootfs.diff_ids)
            .zip(&chains)
            .map(|((l, diff), chain)| self.ensure_layer(&session, l, diff, chain));
        // Let every layer settle before answering, even after a failure: no
        // work of this pull outlives it, and a retry finds the good layers done.
        for r in futures::future::join_all(jobs).await {
            r?;
        }

        small.push((manifest.digest.clone(), manifest.bytes.clone()));
        for (d, b) in &small {
            inner.content.write_bytes(d, b)?;
        }
        let mut blobs: Vec<String> = small.iter().map(|(d, _)| d.clone()).collect();
        blobs.push(m.config.digest.clone());
        blobs.extend(m.layers.iter().map(|l| l.digest.clone()));
        let size = manifest.bytes.len() as u64
            + config_bytes.len() as u64
            + m.layers.iter().map(|l| l.size).sum::<u64>();
        let platform = if cf.variant.is_empty() {
            format!("{}/{}", cf.os, cf.architecture)
        } else {
            format!("{}/{}/{}", cf.os, cf.architecture, cf.variant)
        };
        let rec = ImageRecord {
            id: m.config.digest.clone(),
            repo_tags: r.tagged().into_iter().collect(),
            repo_digests: vec![format!("{}@{}", r.name(), top_digest)],
            size,
            config: cf.config.unwrap_or_default(),
            chain_ids: chains,
            pinned: false,
            blobs,
            manifest_digest: manifest.digest,
            platform,
            created: cf.created,
            config_json: serde_json::from_slice(&config_bytes).unwrap_or_default(),
        };
        let stored = store::commit_record(&inner.store, &rec)?;
        tracing::info!(image = %image, id = %stored.id, "pulled image");
        Ok(stored)
    }

    fn key_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.inner.locks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = m.get(key).and_then(Weak::upgrade) {
            return l;
        }
        m.retain(|_, w| w.strong_count() > 0);
        let l = Arc::new(tokio::sync::Mutex::new(()));
        m.insert(key.to_string(), Arc::downgrade(&l));
        l
    }

    async fn config_blob(&self, session: &Session, digest: &str) -> Result<Vec<u8>> {
        let lock = self.key_lock(&format!("blob {digest}"));
        let _g = lock.lock().await;
        if self.inner.content.has(digest) {
            return self.inner.content.read(digest);
        }
        let bytes = session.small_blob(digest).await?;
        self.inner.blob_downloads.fetch_add(1, Ordering::Relaxed);
        self.inner.content.write_bytes(digest, &bytes)?;
        Ok(bytes)
    }

    /// Makes snapshot `chain` exist: unpacks the stored blob, or downloads,
    /// stores and unpacks it in one streaming pass.
    async fn ensure_layer(
        &self,
        session: &Session,
        layer: &Descriptor,
        diff_id: &str,
        chain: &str,
    ) -> Result<()> {
        let inner = &self.inner;
        // Keys are namespaced: an uncompressed layer's blob digest equals its
        // diff id, which is the chain id of a bottom layer.
        let chain_lock = self.key_lock(&format!("snapshot {chain}"));
        let _c = chain_lock.lock().await;
        if inner.snapshots.exists(chain) {
            return Ok(());
        }
        let blob_lock = self.key_lock(&format!("blob {}", layer.digest));
        let _b = blob_lock.lock().await;
        let _permit = inner
            .downloads
            .acquire()
            .await
            .map_err(|_| Error::Internal("download semaphore closed".into()))?;
        let tmp = inner.snapshots.temp()?;
        let media_type = layer.media_type.clone();
        let digest = layer.digest.clone();
        let diff_id = diff_id.to_string();
        let chain = chain.to_string();
        let worker_inner = self.inner.clone();

        if inner.content.has(&layer.digest) {
            let path = inner.content.path(&layer.digest)?;
            return tokio::task::spawn_blocking(move || {
                let got = content::open_blob(&path)
                    .and_then(|f| unpack::unpack_layer(f, &media_type, tmp.path()));
                worker_inner.finish_layer(tmp, got, &diff_id, &chain)
            })
            .await
            .map_err(|e| Error::Internal(format!("unpack task: {e}")))?;
        }

        let mut resp = session.blob(&layer.digest).await?;
        inner.blob_downloads.fetch_add(1, Ordering::Relaxed);
        let blob = inner.content.writer(&layer.digest, Some(layer.size))?;
        // A few chunks in flight are enough to overlap network and unpacking;
        // hyper hands over up to a few hundred KiB per chunk, so this bounds
        // the memory a layer download holds.
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let worker = tokio::task::spawn_blocking(move || {
            let mut tee = Tee {
                rx,
                cur: Bytes::new(),
                blob,
            };
            let unpacked = unpack::unpack_layer(&mut tee, &media_type, tmp.path());
            // Read to the end even after an unpack error: a tampered blob is
            // reported as a digest mismatch, not as whatever broke first.
            let drained = io::copy(&mut tee, &mut io::sink());
            let got = tee.blob.commit().and_then(|()| {
                let got = unpacked?;
                drained.map_err(|e| Error::Unavailable(format!("blob {digest}: {e}")))?;
                Ok(got)
            });
            worker_inner.finish_layer(tmp, got, &diff_id, &chain)
        });
        let mut send_failed = false;
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    inner
                        .bytes_downloaded
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    if tx.send(Ok(chunk)).await.is_err() {
                        send_failed = true;
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let msg = format!(
                        "blob {}: download: {}",
                        layer.digest,
                        registry::error_chain(&e)
                    );
                    let _ = tx.send(Err(msg)).await;
                    break;
                }
            }
        }
        drop(tx);
        let res = worker
            .await
            .map_err(|e| Error::Internal(format!("unpack task: {e}")))?;
        if send_failed && res.is_ok() {
            return Err(Error::Internal(format!(
                "blob {}: unpack ended early",
                layer.digest
            )));
        }
        res
    }

    /// Finds an image by name, repo digest, id or unique id prefix.
    pub fn resolve(&self, name_digest_or_id: &str) -> Result<Option<ImageRecord>> {
        let s = name_digest_or_id.trim();
        if s.is_empty() {
            return Err(Error::InvalidArgument("image reference is empty".into()));
        }
        let recs = store::records(&self.inner.store)?;
        if let Ok(r) = Reference::parse(s) {
            let found = match (&r.digest, r.tagged()) {
                (Some(d), _) => {
                    let want = format!("{}@{d}", r.name());
                    recs.iter().find(|x| {
                        x.repo_digests.contains(&want)
                            || (x.manifest_digest == *d
                                && x.repo_digests
                                    .iter()
                                    .any(|n| n.starts_with(&format!("{}@", r.name()))))
                    })
                }
                (None, Some(t)) => recs.iter().find(|x| x.repo_tags.contains(&t)),
                (None, None) => None,
            };
            if let Some(f) = found {
                return Ok(Some(f.clone()));
            }
        }
        let hex = s.strip_prefix("sha256:").unwrap_or(s);
        if hex.is_empty() || hex.len() > 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let hits: Vec<_> = recs
            .into_iter()
            .filter(|x| {
                x.id.strip_prefix("sha256:")
                    .is_some_and(|h| h.starts_with(hex))
            })
            .collect();
        match hits.len() {
            0 => Ok(None),
            1 => Ok(hits.into_iter().next()),
            n => Err(Error::InvalidArgument(format!(
                "image id prefix {s:?} is ambiguous: {n} images match"
            ))),
        }
    }

    /// Every image.
    pub fn list(&self) -> Result<Vec<ImageRecord>> {
        store::records(&self.inner.store)
    }

    /// Removes an image with all its names and frees what nothing else uses.
    /// Removing an unknown image succeeds.
    pub async fn remove(&self, name_digest_or_id: &str) -> Result<()> {
        let Some(rec) = self.resolve(name_digest_or_id)? else {
            return Ok(());
        };
        store::delete_record(&self.inner.store, &rec.id)?;
        tracing::info!(id = %rec.id, "removed image");
        self.gc_soon().await;
        Ok(())
    }

    /// Marks an image as pinned (never removed by the kubelet's image GC).
    pub fn set_pinned(&self, name_digest_or_id: &str, pinned: bool) -> Result<ImageRecord> {
        let mut rec = self
            .resolve(name_digest_or_id)?
            .ok_or_else(|| Error::NotFound(format!("image {name_digest_or_id:?} not found")))?;
        rec.pinned = pinned;
        self.inner.store.put("image_records", &rec.id, &rec)?;
        Ok(rec)
    }

    /// Download counters.
    pub fn stats(&self) -> PullStats {
        PullStats {
            blob_downloads: self.inner.blob_downloads.load(Ordering::Relaxed),
            bytes_downloaded: self.inner.bytes_downloaded.load(Ordering::Relaxed),
        }
    }

    /// Moves garbage aside now (cheap: renames), or after the running pulls
    /// end; the deletion runs in the background.
    async fn gc_soon(&self) {
        match self.inner.gc.clone().try_write_owned() {
            Ok(guard) => {
                let inner = self.inner.clone();
                let r = tokio::task::spawn_blocking(move || inner.gc_with(guard)).await;
                match r {
                    Ok(Err(e)) => tracing::warn!(error = %e, "image garbage collection failed"),
                    Err(e) => tracing::warn!(error = %e, "image garbage collection panicked"),
                    Ok(Ok(())) => {}
                }
                Inner::request_trash_emptying(&self.inner);
            }
            Err(_) => self.inner.gc_pending.store(true, Ordering::SeqCst),
        }
    }

    /// Disk use of images and of containers' writable layers.
    pub fn fs_info(&self) -> Result<FsUsage> {
        let root = &self.inner.root;
        let mut seen = HashSet::new();
        let mut images = DirUsage {
            mountpoint: root.clone(),
            used_bytes: 0,
            inodes_used: 0,
        };
        for d in [root.join("content"), root.join("snapshots")] {
            du(&d, &mut seen, &mut images)?;
        }
        let cdir = root.join("containers");
        // kubelet treats differing mount points as a split image filesystem;
        // report the root when both live on the same filesystem.
        let same_fs = match (fs::metadata(root), fs::metadata(&cdir)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev(),
            _ => false,
        };
        let mut containers = DirUsage {
            mountpoint: if same_fs { root.clone() } else { cdir.clone() },
            used_bytes: 0,
            inodes_used: 0,
        };
        let mut seen = HashSet::new();
        for e in fs::read_dir(&cdir).map_err(Error::io("list containers", &cdir))? {
            let e = e.map_err(Error::io("list containers", &cdir))?;
            // Only the writable layers: rootfs is the overlay itself.
            for sub in ["upper", "work"] {
                du(&e.path().join(sub), &mut seen, &mut containers)?;
            }
        }
        Ok(FsUsage { images, containers })
    }

    /// Mounts container `container_id`'s rootfs (its image's snapshots under
    /// its own upper dir) at `containers/<id>/rootfs` and returns that path.
    /// Calling it again for a mounted rootfs returns the same path.
    pub fn prepare_rootfs(&self, image_id: &str, container_id: &str) -> Result<PathBuf> {
        self.prepare_rootfs_mapped(image_id, container_id, None)
    }

    /// [`ImageService::prepare_rootfs`] for a pod with its own user namespace
    /// (`crate::spec::userns`): the lower layers are id-mapped through it and
    /// the writable layer's root belongs to the pod's root (`root_ids`, host
    /// uid and gid), so nothing in the shared snapshots is copied or chowned.
    pub fn prepare_rootfs_mapped(
        &self,
        image_id: &str,
        container_id: &str,
        userns: Option<(&Path, (u32, u32))>,
    ) -> Result<PathBuf> {
        snapshot::validate_container_id(container_id)?;
        let inner = &self.inner;
        let _refs = inner.refs.lock().unwrap_or_else(|p| p.into_inner());
        let rec = self
            .resolve(image_id)?
            .ok_or_else(|| Error::NotFound(format!("image {image_id:?} not found")))?;
        let dir = inner.root.join("containers").join(container_id);
        let rootfs = dir.join("rootfs");
        if snapshot::is_mountpoint(&rootfs) {
            if store::get_ref(&inner.store, container_id)?.is_some_and(|r| r.image_id == rec.id) {
                return Ok(rootfs);
            }
            return Err(Error::AlreadyExists(format!(
                "container {container_id}: rootfs is already mounted from another image"
            )));
        }
        let mut lowers = Vec::new();
        for c in rec.chain_ids.iter().rev() {
            if !inner.snapshots.exists(c) {
                return Err(Error::FailedPrecondition(format!(
                    "image {}: snapshot {c} is missing; pull the image again",
                    rec.id
                )));
            }
            lowers.push(inner.snapshots.path(c)?);
        }
        let upper = dir.join("upper");
        let work = dir.join("work");
        let result = (|| {
            dirs::create_private(&dir)?;
            for d in [&upper, &work, &rootfs] {
                fs::create_dir_all(d).map_err(Error::io("create directory", d))?;
            }
            fs::set_permissions(&upper, fs::Permissions::from_mode(0o755))
                .map_err(Error::io("chmod", &upper))?;
            if lowers.is_empty() {
                // overlayfs needs a lower directory; a layerless image gets an empty one.
                let empty = dir.join("empty");
                fs::create_dir_all(&empty).map_err(Error::io("create directory", &empty))?;
                lowers.push(empty);
            }
            store::put_ref(
                &inner.store,
                container_id,
                &store::SnapshotRef {
                    image_id: rec.id.clone(),
                    chain_ids: rec.chain_ids.clone(),
                },
            )?;
            let volatile = inner.volatile_rootfs.load(Ordering::Relaxed);
            if let Some((ns, (uid, gid))) = userns {
                std::os::unix::fs::lchown(&upper, Some(uid), Some(gid))
                    .map_err(Error::io("chown", &upper))?;
                // Held until the overlay has taken its own copies of them.
                let layers = berth_runtime::idmap::idmapped_layers(&lowers, ns)?;
                let paths: Vec<PathBuf> = layers
                    .iter()
                    .map(berth_runtime::sys::inroot::fd_path)
                    .collect();
                return snapshot::mount_overlay(&paths, &upper, &work, &rootfs, volatile);
            }
            snapshot::mount_overlay(&lowers, &upper, &work, &rootfs, volatile)
        })();
        if let Err(e) = result {
            let _ = store::delete_ref(&inner.store, container_id);
            for d in [&upper, &work, &rootfs, &dir.join("empty")] {
                let _ = fs::remove_dir_all(d);
            }
            let _ = fs::remove_dir(&dir);
            return Err(e);
        }
        Ok(rootfs)
    }

    /// Whether container layers are mounted without syncs (config `volatile_rootfs`).
    pub fn set_volatile_rootfs(&self, on: bool) {
        self.inner.volatile_rootfs.store(on, Ordering::Relaxed);
    }

    /// Unmounts and deletes container `container_id`'s rootfs and writable
    /// layer and drops its snapshot references. Idempotent.
    pub fn release_rootfs(&self, container_id: &str) -> Result<()> {
        snapshot::validate_container_id(container_id)?;
        let inner = &self.inner;
        {
            let _refs = inner.refs.lock().unwrap_or_else(|p| p.into_inner());
            let dir = inner.root.join("containers").join(container_id);
            let rootfs = dir.join("rootfs");
            snapshot::unmount(&rootfs)?;
            match fs::remove_dir(&rootfs) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(Error::io("remove container rootfs", &rootfs)(e))
                }
                _ => {}
            }
            // What the container wrote can be large: deleted off the RPC path.
            for d in [&dir.join("upper"), &dir.join("work"), &dir.join("empty")] {
                inner.trash.stash(d)?;
            }
            // Other files (config.json) belong to the container's owner.
            let _ = fs::remove_dir(&dir);
            store::delete_ref(&inner.store, container_id)?;
        }
        // Its image may have been removed while it ran: collect, but never
        // on RemoveContainer's path.
        if inner.orphans.load(Ordering::SeqCst) || inner.gc_pending.load(Ordering::SeqCst) {
            Inner::request_gc(inner);
        } else {
            Inner::request_trash_emptying(inner);
        }
        Ok(())
    }
}

impl Inner {
    /// Asks the background collector for a collection (under the gc lock)
    /// followed by emptying the trash; starts it if it is not running.
    fn request_gc(this: &Arc<Inner>) {
        this.gc_requested.store(true, Ordering::SeqCst);
        Self::request_trash_emptying(this);
    }

    /// Starts the background collector unless it runs: it collects if asked
    /// to, empties the trash, and goes round again while asked.
    fn request_trash_emptying(this: &Arc<Inner>) {
        this.trash_requested.store(true, Ordering::SeqCst);
        if this.gc_worker.swap(true, Ordering::SeqCst) {
            return; // the running worker sees the request when it goes round
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            // No runtime (unit tests): do it here.
            this.gc_worker.store(false, Ordering::SeqCst);
            if this.gc_requested.swap(false, Ordering::SeqCst) {
                if let Err(e) = this.collect_garbage() {
                    tracing::warn!(error = %e, "image garbage collection failed");
                }
            }
            this.trash.empty();
            return;
        };
        let inner = this.clone();
        rt.spawn(async move {
            loop {
                inner.trash_requested.store(false, Ordering::SeqCst);
                let collect = inner.gc_requested.swap(false, Ordering::SeqCst);
                let guard = if collect {
                    Some(inner.gc.clone().write_owned().await)
                } else {
                    None
                };
                let i = inner.clone();
                let r = tokio::task::spawn_blocking(move || {
                    let r = match guard {
                        Some(g) => i.gc_with(g),
                        None => Ok(()),
                    };
                    // The lock is released: deleting blocks nobody.
                    i.trash.empty();
                    r
                })
                .await;
                match r {
                    Ok(Err(e)) => tracing::warn!(error = %e, "image garbage collection failed"),
                    Err(e) => tracing::warn!(error = %e, "image garbage collection panicked"),
                    Ok(Ok(())) => {}
                }
                inner.gc_worker.store(false, Ordering::SeqCst);
                // A request that came in after the swap above: go round again
                // unless another worker has started meanwhile.
                let again = inner.gc_requested.load(Ordering::SeqCst)
                    || inner.trash_requested.load(Ordering::SeqCst);
                if !again || inner.gc_worker.swap(true, Ordering::SeqCst) {
                    break;
                }
            }
        });
    }

    /// Commits an unpacked layer whose diff id checked out; otherwise moves
    /// the half-made directory to the trash and returns the error.
    fn finish_layer(
        &self,
        tmp: tempfile::TempDir,
        got: Result<String>,
        diff_id: &str,
        chain: &str,
    ) -> Result<()> {
        let checked = got.and_then(|got| {
            if got == diff_id {
                Ok(())
            } else {
                Err(content::digest_mismatch("layer diff", diff_id, &got))
            }
        });
        match checked {
            Ok(()) => self.snapshots.commit(tmp, chain),
            Err(e) => {
                let path = tmp.keep();
                if let Err(t) = self.trash.stash(&path) {
                    tracing::warn!(path = %path.display(), error = %t, "cannot discard unpack directory");
                }
                Err(e)
            }
        }
    }

    fn gc_with(&self, _guard: OwnedRwLockWriteGuard<()>) -> Result<()> {
        self.gc_pending.store(false, Ordering::SeqCst);
        self.collect_garbage()
    }

    /// Deletes blobs and snapshots nothing references. Callers hold the gc lock
    /// (or are `open`, before any pull can start).
    fn collect_garbage(&self) -> Result<()> {
        let _refs = self.refs.lock().unwrap_or_else(|p| p.into_inner());
        let live = store::live_set(&self.store)?;
        self.orphans.store(live.has_orphans(), Ordering::SeqCst);
        let mut freed = 0usize;
        let metrics = crate::metrics::global();
        metrics.gc_runs.inc();
        for s in self.snapshots.list()? {
            if !live.keeps_snapshot(&s) {
                // Measured before it goes: for the freed-bytes metric.
                let mut usage = DirUsage {
                    mountpoint: PathBuf::new(),
                    used_bytes: 0,
                    inodes_used: 0,
                };
                let dir = self.snapshots.path(&s)?;
                let _ = du(&dir, &mut HashSet::new(), &mut usage);
                self.trash.stash(&dir)?;
                metrics.gc_freed_bytes.inc_by(usage.used_bytes);
                freed += 1;
            }
        }
        for b in self.content.list()? {
            if !live.blobs.contains(&b) {
                let path = self.content.path(&b)?;
                let size = fs::metadata(&path).map_or(0, |m| m.len());
                self.trash.stash(&path)?;
                metrics.gc_freed_bytes.inc_by(size);
                freed += 1;
            }
        }
        if freed > 0 {
            tracing::info!(freed, "image garbage collection");
        }
        Ok(())
    }
}

/// Adds the allocated bytes and inodes under `p` (not following symlinks,
/// not crossing mounts, counting hard-linked inodes once).
fn du(p: &Path, seen: &mut HashSet<(u64, u64)>, acc: &mut DirUsage) -> Result<()> {
    let m = match fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("stat", p)(e)),
    };
    let dev = m.dev();
    let mut stack = vec![(p.to_path_buf(), m)];
    while let Some((path, m)) = stack.pop() {
        if m.dev() != dev || !seen.insert((m.dev(), m.ino())) {
            continue;
        }
        acc.used_bytes += m.blocks() * 512;
        acc.inodes_used += 1;
        if m.is_dir() {
            let rd = match fs::read_dir(&path) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("list directory", &path)(e)),
            };
            for e in rd.flatten() {
                if let Ok(cm) = e.metadata() {
                    stack.push((e.path(), cm));
                }
            }
        }
    }
    Ok(())
}

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
//!
//! Here: [`ImageService`] itself (open, resolve, list, remove, pin). Around it:
//! `pull.rs` (the pull), `manifest.rs` (the documents a pull reads), `gc.rs`
//! (collection and the background worker), `rootfs.rs` (container overlays),
//! `volume.rs` (image volumes), `usage.rs` (ImageFsInfo); below them the
//! stores (`content`, `snapshot`, `store`, `trash`) and the registry client
//! (`reference`, `hosts`, `registry`, `unpack`).

pub mod content;
mod gc;
pub mod hosts;
mod manifest;
mod pull;
pub mod reference;
pub mod registry;
mod rootfs;
pub mod snapshot;
pub mod store;
pub mod trash;
pub mod unpack;
mod usage;
pub mod volume;

use manifest::*;
pub use usage::{DirUsage, FsUsage};

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

// By hand: it holds handles (tasks, streams, callbacks, stores) with no useful
// Debug of their own.
impl std::fmt::Debug for ImageService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageService").finish_non_exhaustive()
    }
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
        {
            // Under the lock mounts take: no image volume of it can appear
            // between the check and the deletion.
            let _refs = self.inner.refs.lock().unwrap_or_else(|p| p.into_inner());
            volume::refuse_if_mounted(&self.inner.store, &rec.id)?;
            store::delete_record(&self.inner.store, &rec.id)?;
        }
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
}

//! Garbage collection: what no image record or container names is renamed
//! into the trash under the gc lock, and deleted by one background worker.

use super::usage::du;
use super::*;

impl ImageService {
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

    /// Moves garbage aside now (cheap: renames), or after the running pulls
    /// end; the deletion runs in the background.
    pub(super) async fn gc_soon(&self) {
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
}

impl Inner {
    /// Asks the background collector for a collection (under the gc lock)
    /// followed by emptying the trash; starts it if it is not running.
    pub(super) fn request_gc(this: &Arc<Inner>) {
        this.gc_requested.store(true, Ordering::SeqCst);
        Self::request_trash_emptying(this);
    }

    /// Starts the background collector unless it runs: it collects if asked
    /// to, empties the trash, and goes round again while asked.
    pub(super) fn request_trash_emptying(this: &Arc<Inner>) {
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
                // A removal that found the lock taken (by this very worker,
                // say) left `gc_pending`: it is a request like any other.
                let collect = inner.gc_requested.swap(false, Ordering::SeqCst)
                    | inner.gc_pending.load(Ordering::SeqCst);
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
                    || inner.gc_pending.load(Ordering::SeqCst)
                    || inner.trash_requested.load(Ordering::SeqCst);
                if !again || inner.gc_worker.swap(true, Ordering::SeqCst) {
                    break;
                }
            }
        });
    }

    pub(super) fn gc_with(&self, _guard: OwnedRwLockWriteGuard<()>) -> Result<()> {
        self.gc_pending.store(false, Ordering::SeqCst);
        self.collect_garbage()
    }

    /// Deletes blobs and snapshots nothing references. Callers hold the gc lock
    /// (or are `open`, before any pull can start).
    pub(super) fn collect_garbage(&self) -> Result<()> {
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

//! Pulling: resolve a reference to this node's manifest, fetch the config,
//! download and unpack every missing layer concurrently, record the image.

use super::*;

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

    pub(super) async fn pull_parsed(
        &self,
        r: Reference,
        auth: Option<Credentials>,
    ) -> Result<ImageRecord> {
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

    pub(super) async fn pull_locked(
        &self,
        r: &Reference,
        auth: Option<Credentials>,
    ) -> Result<ImageRecord> {
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

    pub(super) fn key_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.inner.locks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = m.get(key).and_then(Weak::upgrade) {
            return l;
        }
        m.retain(|_, w| w.strong_count() > 0);
        let l = Arc::new(tokio::sync::Mutex::new(()));
        m.insert(key.to_string(), Arc::downgrade(&l));
        l
    }

    pub(super) async fn config_blob(&self, session: &Session, digest: &str) -> Result<Vec<u8>> {
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
    pub(super) async fn ensure_layer(
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
        let max_size = inner.cfg.max_unpacked_layer_size;

        if inner.content.has(&layer.digest) {
            let path = inner.content.path(&layer.digest)?;
            return crate::tasks::blocking(move || {
                let got = content::open_blob(&path)
                    .and_then(|f| unpack::unpack_layer(f, &media_type, tmp.path(), max_size));
                worker_inner.finish_layer(tmp, got, &diff_id, &chain)
            })
            .await;
        }

        let mut resp = session.blob(&layer.digest).await?;
        inner.blob_downloads.fetch_add(1, Ordering::Relaxed);
        let blob = inner.content.writer(&layer.digest, Some(layer.size))?;
        // A few chunks in flight are enough to overlap network and unpacking;
        // hyper hands over up to a few hundred KiB per chunk, so this bounds
        // the memory a layer download holds.
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let worker = crate::tasks::spawn_blocking(move || {
            let mut tee = Tee {
                rx,
                cur: Bytes::new(),
                blob,
            };
            let unpacked = unpack::unpack_layer(&mut tee, &media_type, tmp.path(), max_size);
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
}

impl Inner {
    /// Commits an unpacked layer whose diff id checked out; otherwise moves
    /// the half-made directory to the trash and returns the error.
    pub(super) fn finish_layer(
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
}

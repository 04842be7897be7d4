//! The content store: verified blobs at `content/sha256/<hex>`.
//!
//! A blob is written to a temp file under `content/ingest/` while its sha256 is
//! computed; only when digest (and size, if known) match is it fsynced and
//! renamed into place, so a blob path that exists always holds verified bytes.
//! A dropped or failed writer deletes its temp file; `open` sweeps leftovers of
//! a crash.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use tempfile::NamedTempFile;

use crate::error::{Error, Result};
use crate::store::dirs;

use super::reference::validate_digest;

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The error for content whose hash is not what its descriptor says.
pub fn digest_mismatch(what: &str, expected: &str, actual: &str) -> Error {
    Error::FailedPrecondition(format!(
        "{what} {expected}: digest mismatch, content hashes to {actual}"
    ))
}

/// Blob storage rooted at `<root>/content`.
#[derive(Debug)]
pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
}

impl ContentStore {
    /// Creates the directories and removes temp files a crash left behind.
    pub fn open(root: &Path) -> Result<ContentStore> {
        let blobs = root.join("sha256");
        let ingest = root.join("ingest");
        if ingest.exists() {
            fs::remove_dir_all(&ingest).map_err(Error::io("clean ingest directory", &ingest))?;
        }
        for d in [root, &blobs, &ingest] {
            dirs::ensure(d, dirs::PRIVATE)?;
        }
        Ok(ContentStore { blobs, ingest })
    }

    /// Where the blob `digest` lives (whether or not it exists).
    pub fn path(&self, digest: &str) -> Result<PathBuf> {
        validate_digest(digest).map_err(Error::InvalidArgument)?;
        Ok(self.blobs.join(&digest["sha256:".len()..]))
    }

    /// Whether the blob is stored.
    pub fn has(&self, digest: &str) -> bool {
        self.path(digest).is_ok_and(|p| p.is_file())
    }

    /// Reads a whole (small) blob: manifests and configs.
    pub fn read(&self, digest: &str) -> Result<Vec<u8>> {
        let p = self.path(digest)?;
        fs::read(&p).map_err(Error::io("read blob", p))
    }

    /// Starts writing blob `digest`; bytes are verified at [`BlobWriter::commit`].
    pub fn writer(&self, digest: &str, size: Option<u64>) -> Result<BlobWriter> {
        let dest = self.path(digest)?;
        let tmp = NamedTempFile::new_in(&self.ingest)
            .map_err(Error::io("create temp blob", &self.ingest))?;
        Ok(BlobWriter {
            out: BufWriter::with_capacity(256 * 1024, tmp),
            hasher: Sha256::new(),
            written: 0,
            digest: digest.to_string(),
            size,
            dest,
        })
    }

    /// Verifies and stores a blob held in memory.
    pub fn write_bytes(&self, digest: &str, bytes: &[u8]) -> Result<()> {
        if self.has(digest) {
            return Ok(());
        }
        let mut w = self.writer(digest, Some(bytes.len() as u64))?;
        w.write_all(bytes)
            .map_err(Error::io("write blob", w.dest.clone()))?;
        w.commit()
    }

    /// Deletes a blob; missing is fine.
    pub fn remove(&self, digest: &str) -> Result<()> {
        let p = self.path(digest)?;
        match fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io("remove blob", p)(e))
            }
            _ => Ok(()),
        }
    }

    /// Every stored blob digest.
    pub fn list(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.blobs).map_err(Error::io("list blobs", &self.blobs))? {
            let e = e.map_err(Error::io("list blobs", &self.blobs))?;
            if let Some(name) = e.file_name().to_str() {
                if super::reference::is_sha256_hex(name) {
                    out.push(format!("sha256:{name}"));
                }
            }
        }
        Ok(out)
    }
}

/// An in-progress blob: hashes what is written, renames into place on commit.
#[derive(Debug)]
pub struct BlobWriter {
    out: BufWriter<NamedTempFile>,
    hasher: Sha256,
    written: u64,
    digest: String,
    size: Option<u64>,
    dest: PathBuf,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        if self.size.is_some_and(|s| self.written > s) {
            return Err(std::io::Error::other(format!(
                "blob {} is larger than its descriptor's {} bytes",
                self.digest,
                self.size.unwrap_or_default()
            )));
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

impl BlobWriter {
    /// Checks size and digest, then makes the blob visible. On any error the
    /// temp file is deleted.
    pub fn commit(self) -> Result<()> {
        let actual = format!("sha256:{}", hex::encode(self.hasher.finalize()));
        if actual != self.digest {
            return Err(digest_mismatch("blob", &self.digest, &actual));
        }
        if let Some(s) = self.size {
            if s != self.written {
                return Err(Error::FailedPrecondition(format!(
                    "blob {}: size {} does not match descriptor size {s}",
                    self.digest, self.written
                )));
            }
        }
        let dest = self.dest;
        let tmp = self
            .out
            .into_inner()
            .map_err(|e| Error::io("write blob", dest.clone())(e.into_error()))?;
        tmp.as_file()
            .sync_all()
            .map_err(Error::io("sync blob", dest.clone()))?;
        tmp.persist(&dest)
            .map_err(|e| Error::io("store blob", dest.clone())(e.error))?;
        Ok(())
    }
}

/// Opens a stored blob for reading.
pub fn open_blob(path: &Path) -> Result<File> {
    File::open(path).map_err(Error::io("open blob", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verified_blob_is_stored_and_mismatch_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let cs = ContentStore::open(d.path()).unwrap();
        let good = sha256_digest(b"hello");
        cs.write_bytes(&good, b"hello").unwrap();
        assert_eq!(cs.read(&good).unwrap(), b"hello");
        assert_eq!(cs.list().unwrap(), std::slice::from_ref(&good));

        let claimed = sha256_digest(b"expected");
        let err = cs
            .write_bytes(&claimed, b"tampered")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&claimed) && err.contains("digest mismatch"),
            "{err}"
        );
        assert!(!cs.has(&claimed));
        assert_eq!(fs::read_dir(d.path().join("ingest")).unwrap().count(), 0);

        let mut w = cs.writer(&claimed, Some(3)).unwrap();
        assert!(
            w.write_all(b"expected").is_err(),
            "oversized blob must fail early"
        );
        drop(w);
        assert_eq!(fs::read_dir(d.path().join("ingest")).unwrap().count(), 0);
        cs.path("sha256:../../etc").unwrap_err();
    }
}

//! Unpacking one layer tarball into an empty snapshot directory.
//!
//! Each layer becomes its own overlayfs lower directory, so whiteouts are
//! written in overlayfs' own form: `.wh.name` becomes a 0/0 character device
//! `name`, `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its directory.
//!
//! Names: as in containerd and Go's archive/tar, `name`, `./name` and `/name`
//! all mean `name` inside the snapshot (builders write all three: umoci writes
//! absolute names, `tar -C dir .` writes `./`), and a member that names the
//! root itself (`/`, `.`, `./`) must be a directory whose owner, mode, xattrs
//! and times are given to the snapshot's root. A stream may end right after
//! its last member's data, without the padding to a 512-byte block and the
//! two zero blocks that close a tar (umoci 0.4 writes such layers, and
//! containerd accepts them); one that ends anywhere else is still an error.
//! The padding is supplied by [`PadLastMember`], which knows where the last
//! member's data ends and is outside the hashing reader, so the diff id is
//! the digest of the bytes the blob really holds.
//!
//! Containment: an entry path must not have `..`; every parent
//! component is looked up with `lstat` inside the snapshot and must be a real
//! directory (created when missing) — a layer never legitimately writes through
//! a symlink, so one in a parent position is refused, as is a hard link whose
//! target has `..` or goes through a symlink (an absolute hard link target is,
//! like an absolute name, inside the snapshot). A final component
//! that already exists is removed before the new entry is created (files are
//! opened `O_CREAT|O_EXCL|O_NOFOLLOW`), so nothing is ever written outside the
//! directory. The unpacking runs in a private temp directory that only this
//! thread touches, so the checks cannot be raced.

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use sha2::{Digest as _, Sha256};
use tar::EntryType;

use crate::error::{Error, Result};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (the common case).
    Gzip,
    /// zstd.
    Zstd,
}

/// Picks the decompressor from the first bytes, checked against the media type.
pub fn detect(media_type: &str, magic: &[u8]) -> Result<Compression> {
    let by_magic = if magic.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    };
    let claimed = if media_type.ends_with("gzip") {
        Some(Compression::Gzip)
    } else if media_type.ends_with("zstd") {
        Some(Compression::Zstd)
    } else {
        None
    };
    match claimed {
        Some(c) if c != by_magic => Err(Error::FailedPrecondition(format!(
            "layer media type {media_type} does not match its content ({by_magic:?})"
        ))),
        _ => Ok(by_magic),
    }
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Passes the decompressed stream through and fails once it has given more
/// than `left` bytes: a small blob can decompress to far more than the disk
/// holds (a "decompression bomb"), and the blob's digest is only known to be
/// right at its end, so the uncompressed size must be bounded as it streams.
struct Capped<R> {
    inner: R,
    left: u64,
    /// Set when the cap was hit, so the caller can tell it from a read error
    /// (tar-rs wraps the io::Error it gets in its own message).
    hit: std::rc::Rc<std::cell::Cell<bool>>,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Ask for one byte past the cap, so a stream of exactly the cap passes.
        let want = buf
            .len()
            .min(usize::try_from(self.left.saturating_add(1)).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > self.left {
            self.hit.set(true);
            return Err(io::Error::other("layer exceeds the unpacked size limit"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Decompresses and unpacks `reader` into `dest` (an empty directory) and
/// returns the layer's diff id (`sha256:` of the uncompressed tar). A layer
/// whose uncompressed tar is longer than `max_size` bytes is refused with
/// `FAILED_PRECONDITION` as soon as the stream passes it (0: no limit).
pub fn unpack_layer<R: Read>(
    reader: R,
    media_type: &str,
    dest: &Path,
    max_size: u64,
) -> Result<String> {
    let mut buf = BufReader::with_capacity(128 * 1024, reader);
    let magic = buf.fill_buf().map_err(Error::io("read layer", dest))?;
    let compression = detect(media_type, magic)?;
    let decompressed: Box<dyn Read> = match compression {
        Compression::None => Box::new(buf),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buf)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(buf)
                .map_err(Error::io("start zstd decoder", dest))?,
        ),
    };
    let hit = std::rc::Rc::new(std::cell::Cell::new(false));
    let mut hashing = HashingReader {
        inner: Capped {
            inner: decompressed,
            left: if max_size == 0 { u64::MAX } else { max_size },
            hit: hit.clone(),
        },
        hasher: Sha256::new(),
    };
    let too_big = || {
        Error::FailedPrecondition(format!(
            "layer unpacks to more than {max_size} bytes (registry.max_unpacked_layer_size)"
        ))
    };
    unpack_tar(&mut hashing, dest).map_err(|e| if hit.get() { too_big() } else { e })?;
    // The diff id covers the whole stream, including padding after the
    // end-of-archive blocks.
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| {
        if hit.get() {
            too_big()
        } else {
            Error::io("read layer", dest)(e)
        }
    })?;
    Ok(format!("sha256:{}", hex::encode(hashing.hasher.finalize())))
}

/// tar's block size: every header and every member's data padding.
const BLOCK: u64 = 512;

/// Passes a tar stream through and, when it ends exactly where the last
/// member's data ends (`member_end`, set by the unpacker as it meets each
/// member) but not on a block boundary, supplies the zero padding the writer
/// left off; tar-rs then sees a clean end of archive. An end anywhere else is
/// passed on as it is, so a truncated member is still an error.
struct PadLastMember<R> {
    inner: R,
    pos: u64,
    member_end: std::rc::Rc<std::cell::Cell<u64>>,
    padding: u64,
    ended: bool,
}

impl<R: Read> Read for PadLastMember<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.padding > 0 {
            let n = buf
                .len()
                .min(usize::try_from(self.padding).unwrap_or(usize::MAX));
            buf[..n].fill(0);
            self.padding -= n as u64;
            return Ok(n);
        }
        if self.ended || buf.is_empty() {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            self.ended = true;
            if self.pos == self.member_end.get() && !self.pos.is_multiple_of(BLOCK) {
                self.padding = BLOCK - self.pos % BLOCK;
                return self.read(buf);
            }
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Unpacks an uncompressed tar stream into `dest`.
pub fn unpack_tar<R: Read>(reader: R, dest: &Path) -> Result<()> {
    let member_end = std::rc::Rc::new(std::cell::Cell::new(0));
    let mut archive = tar::Archive::new(PadLastMember {
        inner: reader,
        pos: 0,
        member_end: member_end.clone(),
        padding: 0,
        ended: false,
    });
    let mut dirs: Vec<(PathBuf, tar::Header)> = Vec::new();
    let entries = archive.entries().map_err(Error::io("read layer", dest))?;
    for entry in entries {
        let mut entry = entry.map_err(Error::io("read layer entry", dest))?;
        // The size field counts the bytes stored after the header (for a
        // sparse file too), which is what the stream holds.
        let stored = entry.header().entry_size().unwrap_or(0);
        member_end.set(entry.raw_file_position().saturating_add(stored));
        let raw = entry
            .path()
            .map_err(Error::io("read layer entry name", dest))?
            .into_owned();
        let name = raw.display().to_string();
        let bad = |why: &str| Error::PermissionDenied(format!("layer entry {name:?}: {why}"));
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader) {
            continue;
        }
        let comps = clean(&raw).map_err(|e| bad(&e))?;
        let Some((last, parents)) = comps.split_last() else {
            // "/", "." or "./": the snapshot root itself.
            if kind != EntryType::Directory {
                return Err(bad("the root directory entry is not a directory"));
            }
            let header = entry.header().clone();
            apply_metadata(&mut entry, &header, dest, kind).map_err(|e| bad(&e))?;
            dirs.push((dest.to_path_buf(), header));
            continue;
        };
        let parent = walk_parents(dest, parents, true).map_err(|e| bad(&e))?;
        let last_str = last.to_string_lossy();
        if last_str == OPAQUE_MARKER {
            xattr::set(&parent, "trusted.overlay.opaque", b"y")
                .map_err(|e| bad(&format!("set opaque xattr: {e}")))?;
            continue;
        }
        if let Some(hidden) = last_str.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(bad("malformed whiteout"));
            }
            let target = parent.join(hidden);
            remove_existing(&target).map_err(|e| bad(&e))?;
            mknod(&target, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
                .map_err(|e| bad(&format!("create whiteout: {e}")))?;
            continue;
        }
        let target = parent.join(last);
        let header = entry.header().clone();
        let mode = header
            .mode()
            .map_err(Error::io("read layer entry mode", &target))?
            & 0o7777;
        let io_err = |e: io::Error| bad(&e.to_string());
        match kind {
            EntryType::Directory => {
                match fs::symlink_metadata(&target) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        remove_existing(&target).map_err(|e| bad(&e))?;
                        fs::create_dir(&target).map_err(io_err)?;
                    }
                    Err(_) => fs::create_dir(&target).map_err(io_err)?,
                }
                dirs.push((target.clone(), header.clone()));
            }
            EntryType::Regular | EntryType::Continuous => {
                remove_existing(&target).map_err(|e| bad(&e))?;
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&target)
                    .map_err(io_err)?;
                io::copy(&mut entry, &mut f).map_err(io_err)?;
            }
            EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(io_err)?
                    .ok_or_else(|| bad("symlink without target"))?
                    .into_owned();
                remove_existing(&target).map_err(|e| bad(&e))?;
                std::os::unix::fs::symlink(&link, &target).map_err(io_err)?;
            }
            EntryType::Link => {
                let link = entry
                    .link_name()
                    .map_err(io_err)?
                    .ok_or_else(|| bad("hard link without target"))?
                    .into_owned();
                let lcomps = clean(&link)
                    .map_err(|e| bad(&format!("hard link target {}: {e}", link.display())))?;
                let Some((llast, lparents)) = lcomps.split_last() else {
                    return Err(bad("hard link to the root directory"));
                };
                let lparent = walk_parents(dest, lparents, false)
                    .map_err(|e| bad(&format!("hard link target {}: {e}", link.display())))?;
                let source = lparent.join(llast);
                match fs::symlink_metadata(&source) {
                    Ok(m) if m.is_dir() => return Err(bad("hard link to a directory")),
                    Ok(_) => {}
                    Err(_) => {
                        return Err(bad(&format!(
                            "hard link target {} is not in this layer",
                            link.display()
                        )))
                    }
                }
                if source != target {
                    remove_existing(&target).map_err(|e| bad(&e))?;
                    // linkat without AT_SYMLINK_FOLLOW: links the entry itself.
                    fs::hard_link(&source, &target).map_err(io_err)?;
                }
                continue; // shares the source's metadata
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let flag = match kind {
                    EntryType::Char => SFlag::S_IFCHR,
                    EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                remove_existing(&target).map_err(|e| bad(&e))?;
                mknod(
                    &target,
                    flag,
                    Mode::from_bits_truncate(mode),
                    makedev(major.into(), minor.into()),
                )
                .map_err(|e| bad(&format!("mknod: {e}")))?;
            }
            other => {
                return Err(Error::Unimplemented(format!(
                    "layer entry {name:?}: unsupported tar entry type {other:?}"
                )))
            }
        }
        apply_metadata(&mut entry, &header, &target, kind).map_err(|e| bad(&e))?;
        if kind != EntryType::Directory {
            set_mtime(&target, &header).map_err(io_err)?;
        }
    }
    // Directory times last: creating children changed them.
    for (dir, header) in dirs.iter().rev() {
        set_mtime(dir, header).map_err(Error::io("set directory time", dir))?;
    }
    Ok(())
}

/// Owner, mode and xattrs of an entry (times are set by the caller).
fn apply_metadata<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    header: &tar::Header,
    target: &Path,
    kind: EntryType,
) -> std::result::Result<(), String> {
    let mode = header
        .mode()
        .map_err(|e| format!("read layer entry mode: {e}"))?
        & 0o7777;
    // Owner before mode: chown clears set-id bits.
    // Some writers leave the id fields blank; that means root, as in GNU tar.
    let id = |v: u64, what: &str| {
        u32::try_from(v).map_err(|_| format!("layer entry {what} {v} is out of range"))
    };
    let uid = id(header.uid().unwrap_or(0), "uid")?;
    let gid = id(header.gid().unwrap_or(0), "gid")?;
    std::os::unix::fs::lchown(target, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
    if kind != EntryType::Symlink {
        fs::set_permissions(target, fs::Permissions::from_mode(mode)).map_err(|e| e.to_string())?;
    }
    if let Some(exts) = entry.pax_extensions().map_err(|e| e.to_string())? {
        for ext in exts {
            let ext = ext.map_err(|e| e.to_string())?;
            let Ok(key) = ext.key() else { continue };
            if let Some(attr) = key.strip_prefix("SCHILY.xattr.") {
                xattr::set(target, attr, ext.value_bytes())
                    .map_err(|e| format!("set xattr {attr}: {e}"))?;
            }
        }
    }
    Ok(())
}

fn set_mtime(path: &Path, header: &tar::Header) -> io::Result<()> {
    let t = filetime::FileTime::from_unix_time(
        i64::try_from(header.mtime().unwrap_or(0)).unwrap_or(i64::MAX),
        0,
    );
    filetime::set_symlink_file_times(path, t, t)
}

/// Splits an archive path into plain components relative to the snapshot
/// root (a leading `/` or `./` means the root), refusing `..`.
fn clean(p: &Path) -> std::result::Result<Vec<OsString>, String> {
    let mut out = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => return Err("path has a '..' component".into()),
            Component::Prefix(_) => return Err("path has a prefix".into()),
        }
    }
    Ok(out)
}

/// Resolves the parent directories of an entry inside `root` without
/// following symlinks; missing ones are created when `create` is set.
fn walk_parents(
    root: &Path,
    parents: &[OsString],
    create: bool,
) -> std::result::Result<PathBuf, String> {
    let mut p = root.to_path_buf();
    for c in parents {
        p.push(c);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!(
                    "parent {} is a symlink; refusing to write through it",
                    p.strip_prefix(root).unwrap_or(&p).display()
                ))
            }
            Ok(_) => {
                return Err(format!(
                    "parent {} is not a directory",
                    p.strip_prefix(root).unwrap_or(&p).display()
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                fs::create_dir(&p).map_err(|e| format!("create parent {}: {e}", p.display()))?;
            }
            Err(e) => {
                return Err(format!(
                    "parent {}: {e}",
                    p.strip_prefix(root).unwrap_or(&p).display()
                ))
            }
        }
    }
    Ok(p)
}

/// Removes whatever is at `p` (never following a symlink); absent is fine.
fn remove_existing(p: &Path) -> std::result::Result<(), String> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(_) => Ok(()),
    }
    .map_err(|e| format!("replace {}: {e}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    /// Builds a tar in memory from (path, kind) pairs.
    enum E<'a> {
        Dir(&'a str),
        File(&'a str, &'a [u8]),
        Sym(&'a str, &'a str),
        Hard(&'a str, &'a str),
        Char(&'a str, u32, u32),
    }

    fn tar_of(entries: &[E]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mtime(1_600_000_000);
            h.set_uid(0);
            h.set_gid(0);
            let (path, data): (&str, &[u8]) = match e {
                E::Dir(p) => {
                    h.set_entry_type(EntryType::Directory);
                    h.set_mode(0o755);
                    (p, b"")
                }
                E::File(p, d) => {
                    h.set_entry_type(EntryType::Regular);
                    h.set_mode(0o644);
                    (p, d)
                }
                E::Sym(p, t) | E::Hard(p, t) => {
                    h.set_entry_type(if matches!(e, E::Sym(..)) {
                        EntryType::Symlink
                    } else {
                        EntryType::Link
                    });
                    h.set_mode(0o777);
                    h.set_link_name_literal(t).unwrap();
                    (p, b"")
                }
                E::Char(p, maj, min) => {
                    h.set_entry_type(EntryType::Char);
                    h.set_mode(0o666);
                    h.set_device_major(*maj).unwrap();
                    h.set_device_minor(*min).unwrap();
                    (p, b"")
                }
            };
            h.set_size(data.len() as u64);
            // Write the name bytes directly: the builder's own path setters
            // refuse `..` and absolute names, which these tests need.
            let name = path.as_bytes();
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            h.set_cksum();
            b.append(&h, data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn unpack(entries: &[E]) -> (tempfile::TempDir, Result<()>) {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("snap")).unwrap();
        let r = unpack_tar(&tar_of(entries)[..], &d.path().join("snap"));
        (d, r)
    }

    #[test]
    fn files_links_devices_and_metadata() {
        let (d, r) = unpack(&[
            E::Dir("bin/"),
            E::File("bin/tool", b"#!/bin/sh\n"),
            E::Hard("bin/tool2", "bin/tool"),
            E::Sym("bin/sh", "/bin/tool"),
            E::Char("dev/null", 1, 3),
            E::File("deep/new/file", b"x"),
        ]);
        r.unwrap();
        let s = d.path().join("snap");
        assert_eq!(fs::read(s.join("bin/tool")).unwrap(), b"#!/bin/sh\n");
        let m1 = fs::metadata(s.join("bin/tool")).unwrap();
        let m2 = fs::metadata(s.join("bin/tool2")).unwrap();
        assert_eq!((m1.ino(), m1.nlink()), (m2.ino(), 2));
        assert_eq!(m1.mode() & 0o7777, 0o644);
        assert_eq!(m1.mtime(), 1_600_000_000);
        assert_eq!(
            fs::read_link(s.join("bin/sh")).unwrap(),
            Path::new("/bin/tool")
        );
        let dev = fs::symlink_metadata(s.join("dev/null")).unwrap();
        assert!(dev.file_type().is_char_device());
        assert_eq!(dev.rdev(), makedev(1, 3));
        assert_eq!(fs::read(s.join("deep/new/file")).unwrap(), b"x");
        assert_eq!(fs::metadata(s.join("bin")).unwrap().mtime(), 1_600_000_000);
    }

    #[test]
    fn whiteouts_and_opaque_dirs() {
        let (d, r) = unpack(&[
            E::Dir("etc/"),
            E::File("etc/.wh.motd", b""),
            E::Dir("var/cache/"),
            E::File("var/cache/.wh..wh..opq", b""),
            E::File("var/cache/kept", b"k"),
        ]);
        r.unwrap();
        let s = d.path().join("snap");
        let wh = fs::symlink_metadata(s.join("etc/motd")).unwrap();
        assert!(wh.file_type().is_char_device());
        assert_eq!(wh.rdev(), 0);
        assert!(!s.join("etc/.wh.motd").exists());
        assert_eq!(
            xattr::get(s.join("var/cache"), "trusted.overlay.opaque")
                .unwrap()
                .as_deref(),
            Some(&b"y"[..])
        );
        assert!(!s.join("var/cache/.wh..wh..opq").exists());
        assert_eq!(fs::read(s.join("var/cache/kept")).unwrap(), b"k");
    }

    fn assert_refused(entries: &[E], needle: &str, outside: &[&str]) {
        let (d, r) = unpack(entries);
        let err = r.expect_err("must be refused").to_string();
        assert!(err.contains(needle), "{err} should name {needle}");
        for o in outside {
            assert!(
                !d.path().join(o).exists(),
                "{o} was written outside the snapshot"
            );
        }
    }

    #[test]
    fn dotdot_escape_is_refused() {
        assert_refused(
            &[E::File("../escaped", b"x")],
            "\"../escaped\"",
            &["escaped"],
        );
        assert_refused(
            &[E::Dir("a/"), E::File("a/../../escaped", b"x")],
            "'..'",
            &["escaped"],
        );
    }

    #[test]
    fn absolute_and_dot_names_resolve_inside_the_snapshot() {
        let (d, r) = unpack(&[
            E::Dir("/etc/"),
            E::File("/tmp/berth-abs-test", b"abs"),
            E::File("./etc/motd", b"dot"),
            E::File(".//etc//issue", b"dots"),
            E::Hard("/etc/motd2", "/etc/motd"),
            E::Hard("etc/motd3", "./etc/motd"),
        ]);
        r.unwrap();
        let s = d.path().join("snap");
        assert_eq!(fs::read(s.join("tmp/berth-abs-test")).unwrap(), b"abs");
        assert!(!Path::new("/tmp/berth-abs-test").exists());
        assert_eq!(fs::read(s.join("etc/motd")).unwrap(), b"dot");
        assert_eq!(fs::read(s.join("etc/issue")).unwrap(), b"dots");
        let m = fs::metadata(s.join("etc/motd")).unwrap();
        assert_eq!(m.nlink(), 3);
        assert_eq!(m.ino(), fs::metadata(s.join("etc/motd2")).unwrap().ino());
        // `..` stays refused however the name starts.
        assert_refused(&[E::File("/../escaped", b"x")], "'..'", &["escaped"]);
        assert_refused(&[E::File("./../escaped", b"x")], "'..'", &["escaped"]);
    }

    /// A member naming the root (`/`, `.`, `./`), as umoci and `tar -C dir .`
    /// write, gives the snapshot root its owner, mode and time.
    #[test]
    fn root_entry_sets_the_root_metadata() {
        for name in ["/", ".", "./"] {
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(EntryType::Directory);
            h.set_mode(0o750);
            h.set_uid(1234);
            h.set_gid(4321);
            h.set_mtime(1_500_000_000);
            h.set_size(0);
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            b.append(&h, &b""[..]).unwrap();
            let mut tar = b.into_inner().unwrap();
            tar.truncate(tar.len() - 1024);
            tar.extend(tar_of(&[E::File("bin/tool", b"t")]));
            let d = tempfile::tempdir().unwrap();
            let s = d.path().join("snap");
            fs::create_dir(&s).unwrap();
            unpack_tar(&tar[..], &s).unwrap();
            let m = fs::metadata(&s).unwrap();
            assert_eq!(m.mode() & 0o7777, 0o750, "{name}");
            assert_eq!((m.uid(), m.gid()), (1234, 4321), "{name}");
            assert_eq!(m.mtime(), 1_500_000_000, "{name}: set after the children");
            assert_eq!(fs::read(s.join("bin/tool")).unwrap(), b"t");
        }
        assert_refused(&[E::File("/", b"x")], "not a directory", &[]);
        assert_refused(&[E::Sym("./", "/etc")], "not a directory", &[]);
    }

    /// umoci 0.4 ends a layer right after its last member's data: no padding
    /// to the block, no end-of-archive blocks.
    #[test]
    fn stream_may_end_after_the_last_members_data() {
        let full = tar_of(&[E::Dir("etc/"), E::File("etc/motd", b"hi\n")]);
        // header + 3 data bytes + 509 padding + 1024 end-of-archive zeros.
        let unpadded = &full[..full.len() - 1024 - 509];
        let d = tempfile::tempdir().unwrap();
        unpack_tar(unpadded, d.path()).unwrap();
        assert_eq!(fs::read(d.path().join("etc/motd")).unwrap(), b"hi\n");
        // Ending on a block boundary without the end-of-archive blocks.
        let d = tempfile::tempdir().unwrap();
        unpack_tar(&full[..full.len() - 1024], d.path()).unwrap();
        assert_eq!(fs::read(d.path().join("etc/motd")).unwrap(), b"hi\n");
        // The diff id is the digest of the bytes the blob holds.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, unpadded).unwrap();
        let d = tempfile::tempdir().unwrap();
        let got = unpack_layer(
            &gz.finish().unwrap()[..],
            "application/vnd.oci.image.layer.v1.tar+gzip",
            d.path(),
            0,
        )
        .unwrap();
        assert_eq!(got, crate::image::content::sha256_digest(unpadded));
        // Ending inside a member's data or inside a header is still an error.
        for cut in [full.len() - 1024 - 510, 512 + 100, 700] {
            let d = tempfile::tempdir().unwrap();
            let err = unpack_tar(&full[..cut], d.path()).expect_err("truncated");
            assert!(err.to_string().contains("layer"), "{err}");
        }
    }

    #[test]
    fn write_through_absolute_symlink_is_refused() {
        let (d, _) = unpack(&[]);
        let outside = d.path().join("outside");
        fs::create_dir(&outside).unwrap();
        let link_target = outside.to_str().unwrap().to_string();
        assert_refused(
            &[E::Sym("evil", &link_target), E::File("evil/pwned", b"x")],
            "\"evil/pwned\"",
            &["outside/pwned"],
        );
        // Also through a relative symlink climbing out.
        assert_refused(
            &[E::Sym("up", ".."), E::File("up/pwned", b"x")],
            "symlink",
            &["pwned"],
        );
    }

    #[test]
    fn symlink_then_file_replaces_the_link_not_its_target() {
        let (d, _) = unpack(&[]);
        fs::write(d.path().join("victim"), b"original").unwrap();
        let victim = d.path().join("victim");
        let tar = tar_of(&[E::Sym("f", victim.to_str().unwrap()), E::File("f", b"new")]);
        unpack_tar(&tar[..], &d.path().join("snap")).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"original");
        assert_eq!(fs::read(d.path().join("snap/f")).unwrap(), b"new");
    }

    #[test]
    fn hard_link_outside_is_refused() {
        // An absolute target names a file of the layer, never the host's.
        let host = fs::metadata("/etc/passwd").map(|m| m.nlink());
        assert_refused(
            &[E::Hard("passwd", "/etc/passwd")],
            "parent etc: No such file",
            &[],
        );
        assert_eq!(
            fs::metadata("/etc/passwd").map(|m| m.nlink()).ok(),
            host.ok()
        );
        assert_refused(&[E::Hard("passwd", "../../../../etc/passwd")], "'..'", &[]);
        let (d, _) = unpack(&[]);
        let etc = d.path().join("hostetc");
        fs::create_dir(&etc).unwrap();
        fs::write(etc.join("passwd"), b"root").unwrap();
        let (d2, r) = unpack(&[
            E::Sym("etc", etc.to_str().unwrap()),
            E::Hard("passwd", "etc/passwd"),
        ]);
        assert!(r.unwrap_err().to_string().contains("symlink"));
        assert!(!d2.path().join("snap/passwd").exists());
        assert_eq!(fs::metadata(etc.join("passwd")).unwrap().nlink(), 1);
    }

    #[test]
    fn compression_detection() {
        assert_eq!(
            detect("application/vnd.oci.image.layer.v1.tar", b"abc").unwrap(),
            Compression::None
        );
        assert_eq!(
            detect("application/vnd.oci.image.layer.v1.tar", &[0x1f, 0x8b]).unwrap(),
            Compression::Gzip
        );
        assert_eq!(
            detect(
                "application/vnd.oci.image.layer.v1.tar+zstd",
                &[0x28, 0xb5, 0x2f, 0xfd]
            )
            .unwrap(),
            Compression::Zstd
        );
        detect(
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            b"plain",
        )
        .unwrap_err();
    }

    #[test]
    fn gzip_and_zstd_layers_give_the_tar_diff_id() {
        let tar = tar_of(&[E::File("a", b"hello")]);
        let want = crate::image::content::sha256_digest(&tar);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &tar).unwrap();
        let gz = gz.finish().unwrap();
        let zs = zstd::encode_all(&tar[..], 1).unwrap();
        for (mt, blob) in [
            ("application/vnd.oci.image.layer.v1.tar+gzip", gz),
            ("application/vnd.oci.image.layer.v1.tar+zstd", zs),
            ("application/vnd.oci.image.layer.v1.tar", tar.clone()),
        ] {
            let d = tempfile::tempdir().unwrap();
            assert_eq!(
                unpack_layer(&blob[..], mt, d.path(), 0).unwrap(),
                want,
                "{mt}"
            );
            assert_eq!(fs::read(d.path().join("a")).unwrap(), b"hello");
        }
    }

    /// A few KiB of gzip that inflate to 64 MiB are cut off at the limit,
    /// with a code and message naming it, before the file is written out;
    /// the same layer passes with no limit or a limit of exactly its size.
    #[test]
    fn a_layer_larger_than_the_limit_when_unpacked_is_refused() {
        let mut l = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(64 << 20);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        l.append_data(&mut h, "zeros", io::repeat(0).take(64 << 20))
            .unwrap();
        let tar = l.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        io::Write::write_all(&mut gz, &tar).unwrap();
        let bomb = gz.finish().unwrap();
        assert!(bomb.len() < 256 << 10, "{}", bomb.len());
        let mt = "application/vnd.oci.image.layer.v1.tar+gzip";

        let d = tempfile::tempdir().unwrap();
        let err = unpack_layer(&bomb[..], mt, d.path(), 1 << 20).unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err}");
        assert!(err.to_string().contains("max_unpacked_layer_size"), "{err}");
        let written = fs::metadata(d.path().join("zeros")).map_or(0, |m| m.len());
        assert!(written <= 1 << 20, "{written} bytes written past the limit");

        let want = crate::image::content::sha256_digest(&tar);
        for limit in [0, tar.len() as u64] {
            let d = tempfile::tempdir().unwrap();
            assert_eq!(unpack_layer(&bomb[..], mt, d.path(), limit).unwrap(), want);
        }
        let d = tempfile::tempdir().unwrap();
        let err = unpack_layer(&bomb[..], mt, d.path(), tar.len() as u64 - 1).unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err}");
    }
}

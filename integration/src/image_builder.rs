//! Builds OCI images in memory with our own code: tar layers (gzip, zstd or plain),
//! an image config, a manifest and optionally an index.
//!
//! Everything is deterministic: fixed mtimes, uid/gid 0 unless asked, no user or
//! group names, gzip without a timestamp, JSON with sorted keys. The same inputs
//! therefore give the same digests on every run and every machine.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Modification time stamped on every tar entry (2024-01-01T00:00:00Z).
pub const FIXED_MTIME: u64 = 1_704_067_200;
/// The `created` time written into image configs, matching [`FIXED_MTIME`].
pub const FIXED_CREATED: &str = "2024-01-01T00:00:00Z";

pub const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MEDIA_OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MEDIA_OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MEDIA_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const MEDIA_DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A content-addressed blob: its media type, digest and bytes.
#[derive(Clone, Debug)]
pub struct Blob {
    pub media_type: String,
    pub digest: String,
    pub data: Vec<u8>,
}

impl Blob {
    /// Wraps bytes, computing their digest.
    pub fn new(media_type: impl Into<String>, data: Vec<u8>) -> Self {
        Blob {
            media_type: media_type.into(),
            digest: sha256_digest(&data),
            data,
        }
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.data.len() as u64
    }

    /// The OCI descriptor (`mediaType`, `digest`, `size`) pointing at this blob.
    pub fn descriptor(&self) -> Value {
        json!({
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size(),
        })
    }
}

/// How a layer's tar stream is stored in the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    /// Gzip made of stored (level 0) deflate blocks: a valid gzip stream that costs
    /// nothing to produce, for incompressible data.
    GzipStored,
    Zstd,
}

/// Which manifest dialect an image is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManifestFormat {
    Oci,
    /// Docker image manifest v2 schema 2 (only gzip layers are expressible).
    DockerV2,
}

/// One layer: the compressed blob plus the digest of its uncompressed tar (diff id).
#[derive(Clone, Debug)]
pub struct Layer {
    pub blob: Blob,
    pub diff_id: String,
    pub compression: Compression,
}

impl Layer {
    /// Compresses a finished tar stream into a layer.
    pub fn from_tar(tar: &[u8], compression: Compression) -> Result<Layer> {
        use std::io::Write;
        let diff_id = sha256_digest(tar);
        let build_err = |e: std::io::Error| Error::Build {
            image: "layer".into(),
            message: format!("compress layer {diff_id}: {e}"),
        };
        let (media_type, data) = match compression {
            Compression::None => (MEDIA_OCI_LAYER, tar.to_vec()),
            Compression::Gzip | Compression::GzipStored => {
                let level = if compression == Compression::Gzip {
                    flate2::Compression::default()
                } else {
                    flate2::Compression::none()
                };
                let mut enc = flate2::write::GzEncoder::new(Vec::new(), level);
                enc.write_all(tar).map_err(build_err)?;
                (MEDIA_OCI_LAYER_GZIP, enc.finish().map_err(build_err)?)
            }
            Compression::Zstd => (
                MEDIA_OCI_LAYER_ZSTD,
                zstd::encode_all(tar, 3).map_err(build_err)?,
            ),
        };
        Ok(Layer {
            blob: Blob::new(media_type, data),
            diff_id,
            compression,
        })
    }
}

/// Writes a deterministic tar stream for one layer. Paths are given relative to the
/// root, without a leading slash (`bin/sh`).
pub struct LayerBuilder {
    tar: tar::Builder<Vec<u8>>,
}

// By hand: tar's builder has no Debug.
impl std::fmt::Debug for LayerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerBuilder").finish_non_exhaustive()
    }
}

impl Default for LayerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl LayerBuilder {
    pub fn new() -> Self {
        LayerBuilder {
            tar: tar::Builder::new(Vec::new()),
        }
    }

    fn header(kind: tar::EntryType, mode: u32, uid: u64, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(uid);
        h.set_mtime(FIXED_MTIME);
        h.set_size(size);
        h
    }

    fn append(&mut self, mut h: tar::Header, path: &str, data: &[u8]) -> Result<&mut Self> {
        self.tar
            .append_data(&mut h, path, data)
            .map_err(|e| Error::Build {
                image: "layer".into(),
                message: format!("append {path}: {e}"),
            })?;
        Ok(self)
    }

    /// A directory owned by root.
    pub fn dir(&mut self, path: &str, mode: u32) -> Result<&mut Self> {
        self.dir_owned(path, mode, 0)
    }

    /// A directory owned by `uid:uid`.
    pub fn dir_owned(&mut self, path: &str, mode: u32, uid: u64) -> Result<&mut Self> {
        let h = Self::header(tar::EntryType::Directory, mode, uid, 0);
        self.append(h, &format!("{}/", path.trim_end_matches('/')), &[])
    }

    /// A regular file owned by root.
    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> Result<&mut Self> {
        self.file_owned(path, mode, 0, data)
    }

    /// A regular file owned by `uid:uid`.
    pub fn file_owned(
        &mut self,
        path: &str,
        mode: u32,
        uid: u64,
        data: &[u8],
    ) -> Result<&mut Self> {
        let h = Self::header(tar::EntryType::Regular, mode, uid, data.len() as u64);
        self.append(h, path, data)
    }

    /// A regular file copied from the host (content only; metadata is fixed).
    pub fn file_from_host(&mut self, path: &str, mode: u32, host: &Path) -> Result<&mut Self> {
        let data = std::fs::read(host).map_err(Error::io(host))?;
        self.file(path, mode, &data)
    }

    fn link(&mut self, kind: tar::EntryType, path: &str, target: &str) -> Result<&mut Self> {
        let mut h = Self::header(kind, 0o777, 0, 0);
        self.tar
            .append_link(&mut h, path, target)
            .map_err(|e| Error::Build {
                image: "layer".into(),
                message: format!("link {path} -> {target}: {e}"),
            })?;
        Ok(self)
    }

    /// A device node (`kind` is [`tar::EntryType::Char`] or
    /// [`tar::EntryType::Block`]) owned by root.
    pub fn device(
        &mut self,
        path: &str,
        kind: tar::EntryType,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> Result<&mut Self> {
        let mut h = Self::header(kind, mode, 0, 0);
        h.set_device_major(major)
            .and_then(|()| h.set_device_minor(minor))
            .map_err(|e| Error::Build {
                image: "layer".into(),
                message: format!("device {path}: {e}"),
            })?;
        self.append(h, path, &[])
    }

    /// A hard link `path` to the earlier entry `target` (both root-relative).
    pub fn hardlink(&mut self, path: &str, target: &str) -> Result<&mut Self> {
        self.link(tar::EntryType::Link, path, target)
    }

    /// A symbolic link `path` whose content is `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<&mut Self> {
        self.link(tar::EntryType::Symlink, path, target)
    }

    /// An OCI whiteout deleting `path` from the layers below.
    pub fn whiteout(&mut self, path: &str) -> Result<&mut Self> {
        let path = path.trim_end_matches('/');
        let (dir, name) = match path.rsplit_once('/') {
            Some((dir, name)) => (format!("{dir}/"), name),
            None => (String::new(), path),
        };
        self.file(&format!("{dir}.wh.{name}"), 0o644, &[])
    }

    /// An opaque-directory marker: `dir` hides everything the layers below put in it.
    pub fn opaque(&mut self, dir: &str) -> Result<&mut Self> {
        self.file(
            &format!("{}/.wh..wh..opq", dir.trim_end_matches('/')),
            0o644,
            &[],
        )
    }

    /// Finishes the tar stream (uncompressed).
    pub fn into_tar(self) -> Result<Vec<u8>> {
        self.tar.into_inner().map_err(|e| Error::Build {
            image: "layer".into(),
            message: format!("finish tar: {e}"),
        })
    }

    /// Finishes the tar stream and compresses it.
    pub fn finish(self, compression: Compression) -> Result<Layer> {
        Layer::from_tar(&self.into_tar()?, compression)
    }
}

/// The runtime part of an image config (`config` in the OCI image config JSON).
#[derive(Clone, Debug, Default)]
pub struct ImageConfig {
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub env: Vec<String>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub stop_signal: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub exposed_ports: Vec<String>,
    pub volumes: Vec<String>,
}

impl ImageConfig {
    fn to_json(&self) -> Value {
        let mut c = serde_json::Map::new();
        if let Some(u) = &self.user {
            c.insert("User".into(), json!(u));
        }
        if let Some(w) = &self.working_dir {
            c.insert("WorkingDir".into(), json!(w));
        }
        if !self.env.is_empty() {
            c.insert("Env".into(), json!(self.env));
        }
        if let Some(e) = &self.entrypoint {
            c.insert("Entrypoint".into(), json!(e));
        }
        if let Some(cmd) = &self.cmd {
            c.insert("Cmd".into(), json!(cmd));
        }
        if let Some(s) = &self.stop_signal {
            c.insert("StopSignal".into(), json!(s));
        }
        if !self.labels.is_empty() {
            c.insert("Labels".into(), json!(self.labels));
        }
        if !self.exposed_ports.is_empty() {
            let ports: serde_json::Map<String, Value> = self
                .exposed_ports
                .iter()
                .map(|p| (p.clone(), json!({})))
                .collect();
            c.insert("ExposedPorts".into(), Value::Object(ports));
        }
        if !self.volumes.is_empty() {
            let vols: serde_json::Map<String, Value> = self
                .volumes
                .iter()
                .map(|p| (p.clone(), json!({})))
                .collect();
            c.insert("Volumes".into(), Value::Object(vols));
        }
        Value::Object(c)
    }
}

/// An OCI platform (`os`/`architecture`, optional `variant`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn linux(architecture: &str) -> Self {
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: None,
        }
    }

    /// The platform of the machine running the tests, in OCI/Go spelling.
    pub fn host() -> Self {
        Self::linux(host_architecture())
    }

    fn to_json(&self) -> Value {
        let mut p = json!({ "os": self.os, "architecture": self.architecture });
        if let Some(v) = &self.variant {
            p["variant"] = json!(v);
        }
        p
    }
}

/// Go's GOARCH name of the host architecture (what OCI platforms use).
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// A complete single-platform image: layers, config blob and manifest blob.
#[derive(Clone, Debug)]
pub struct Image {
    pub name: String,
    pub layers: Vec<Layer>,
    pub config: Blob,
    pub manifest: Blob,
    pub platform: Platform,
}

impl Image {
    /// Assembles an OCI image from layers (lowest first) and a runtime config.
    pub fn build(
        name: &str,
        layers: Vec<Layer>,
        config: &ImageConfig,
        platform: Platform,
    ) -> Result<Image> {
        Self::build_with_format(name, layers, config, platform, ManifestFormat::Oci)
    }

    /// Like [`Image::build`] in a chosen manifest dialect.
    pub fn build_with_format(
        name: &str,
        layers: Vec<Layer>,
        config: &ImageConfig,
        platform: Platform,
        format: ManifestFormat,
    ) -> Result<Image> {
        let diff_ids: Vec<&str> = layers.iter().map(|l| l.diff_id.as_str()).collect();
        let history: Vec<Value> = layers
            .iter()
            .enumerate()
            .map(|(i, _)| {
                json!({
                    "created": FIXED_CREATED,
                    "created_by": format!("berth-integration {name} layer {i}"),
                })
            })
            .collect();
        let mut config_json = json!({
            "created": FIXED_CREATED,
            "architecture": platform.architecture,
            "os": platform.os,
            "config": config.to_json(),
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
            "history": history,
        });
        if let Some(v) = &platform.variant {
            config_json["variant"] = json!(v);
        }
        let (config_type, manifest_type) = match format {
            ManifestFormat::Oci => (MEDIA_OCI_CONFIG, MEDIA_OCI_MANIFEST),
            ManifestFormat::DockerV2 => (MEDIA_DOCKER_CONFIG, MEDIA_DOCKER_MANIFEST),
        };
        let config_blob = Blob::new(config_type, to_json_bytes(name, &config_json)?);
        let mut layer_descs = Vec::with_capacity(layers.len());
        for layer in &layers {
            let mut d = layer.blob.descriptor();
            if format == ManifestFormat::DockerV2 {
                if layer.blob.media_type != MEDIA_OCI_LAYER_GZIP {
                    return Err(Error::Build {
                        image: name.into(),
                        message: format!(
                            "docker v2 manifests only carry gzip layers, got {}",
                            layer.blob.media_type
                        ),
                    });
                }
                d["mediaType"] = json!(MEDIA_DOCKER_LAYER_GZIP);
            }
            layer_descs.push(d);
        }
        let manifest_json = json!({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": config_blob.descriptor(),
            "layers": layer_descs,
        });
        let manifest = Blob::new(manifest_type, to_json_bytes(name, &manifest_json)?);
        Ok(Image {
            name: name.into(),
            layers,
            config: config_blob,
            manifest,
            platform,
        })
    }

    /// The manifest digest (`sha256:…`), i.e. the image's identity in a registry.
    pub fn digest(&self) -> &str {
        &self.manifest.digest
    }

    /// The config digest, which CRI reports as the image id.
    pub fn id(&self) -> &str {
        &self.config.digest
    }

    /// Sum of the compressed layer sizes.
    pub fn layers_size(&self) -> u64 {
        self.layers.iter().map(|l| l.blob.size()).sum()
    }

    /// The parsed config JSON.
    pub fn config_json(&self) -> Value {
        // The bytes were produced by serde_json above, so they always parse.
        serde_json::from_slice(&self.config.data).unwrap_or(Value::Null)
    }
}

/// A multi-platform image: an index pointing at one manifest per platform.
#[derive(Clone, Debug)]
pub struct ImageIndex {
    pub name: String,
    pub images: Vec<Image>,
    pub index: Blob,
}

impl ImageIndex {
    /// Writes an OCI index (or a Docker manifest list when `format` is DockerV2)
    /// over the given images, in order.
    pub fn build(name: &str, images: Vec<Image>, format: ManifestFormat) -> Result<ImageIndex> {
        let media_type = match format {
            ManifestFormat::Oci => MEDIA_OCI_INDEX,
            ManifestFormat::DockerV2 => MEDIA_DOCKER_LIST,
        };
        let manifests: Vec<Value> = images
            .iter()
            .map(|img| {
                let mut d = img.manifest.descriptor();
                d["platform"] = img.platform.to_json();
                d
            })
            .collect();
        let index_json = json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": manifests,
        });
        let index = Blob::new(media_type, to_json_bytes(name, &index_json)?);
        Ok(ImageIndex {
            name: name.into(),
            images,
            index,
        })
    }

    /// The index digest.
    pub fn digest(&self) -> &str {
        &self.index.digest
    }

    /// The image for a platform, if the index lists it.
    pub fn image_for(&self, platform: &Platform) -> Option<&Image> {
        self.images.iter().find(|i| &i.platform == platform)
    }
}

fn to_json_bytes(name: &str, v: &Value) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|source| Error::Json {
        what: format!("image {name}"),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_tar(data: &[u8]) -> Vec<(String, tar::EntryType, Vec<u8>, Option<String>)> {
        let mut ar = tar::Archive::new(data);
        let mut out = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let kind = e.header().entry_type();
            let link = e
                .link_name()
                .unwrap()
                .map(|l| l.to_string_lossy().into_owned());
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut buf).unwrap();
            out.push((path, kind, buf, link));
        }
        out
    }

    #[test]
    fn whiteout_and_opaque_entries_use_oci_names() {
        let mut b = LayerBuilder::new();
        b.whiteout("a/b/gone").unwrap().whiteout("top").unwrap();
        b.opaque("a/dir/").unwrap();
        let entries = read_tar(&b.into_tar().unwrap());
        let names: Vec<_> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, ["a/b/.wh.gone", ".wh.top", "a/dir/.wh..wh..opq"]);
    }

    #[test]
    fn hardlinks_point_at_their_target() {
        let mut b = LayerBuilder::new();
        b.file("bin/busybox", 0o755, b"elf").unwrap();
        b.hardlink("bin/sh", "bin/busybox").unwrap();
        let entries = read_tar(&b.into_tar().unwrap());
        assert_eq!(entries[1].1, tar::EntryType::Link);
        assert_eq!(entries[1].3.as_deref(), Some("bin/busybox"));
    }

    #[test]
    fn long_paths_survive() {
        let long = format!("d/{}", "x".repeat(200));
        let mut b = LayerBuilder::new();
        b.file(&long, 0o644, b"hi").unwrap();
        let entries = read_tar(&b.into_tar().unwrap());
        assert_eq!(entries[0].0, long);
    }

    fn layer(c: Compression) -> Layer {
        let mut b = LayerBuilder::new();
        b.dir("etc", 0o755).unwrap();
        b.file("etc/hello", 0o644, b"hello world").unwrap();
        b.finish(c).unwrap()
    }

    #[test]
    fn every_compression_round_trips_to_the_same_diff_id() {
        use std::io::Read;
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::GzipStored,
            Compression::Zstd,
        ] {
            let l = layer(c);
            let raw = match c {
                Compression::None => l.blob.data.clone(),
                Compression::Gzip | Compression::GzipStored => {
                    let mut v = Vec::new();
                    flate2::read::GzDecoder::new(&l.blob.data[..])
                        .read_to_end(&mut v)
                        .unwrap();
                    v
                }
                Compression::Zstd => zstd::decode_all(&l.blob.data[..]).unwrap(),
            };
            assert_eq!(sha256_digest(&raw), l.diff_id, "{c:?}");
            assert_eq!(l.blob.digest, sha256_digest(&l.blob.data));
        }
        assert_eq!(
            layer(Compression::Zstd).blob.media_type,
            MEDIA_OCI_LAYER_ZSTD
        );
        assert_eq!(layer(Compression::None).blob.media_type, MEDIA_OCI_LAYER);
    }

    #[test]
    fn building_twice_gives_identical_digests() {
        let cfg = ImageConfig {
            cmd: Some(vec!["sh".into()]),
            ..Default::default()
        };
        let a = Image::build("t", vec![layer(Compression::Gzip)], &cfg, Platform::host()).unwrap();
        let b = Image::build("t", vec![layer(Compression::Gzip)], &cfg, Platform::host()).unwrap();
        assert_eq!(a.digest(), b.digest());
        assert_eq!(a.id(), b.id());
    }

    #[test]
    fn manifest_references_config_and_layers() {
        let cfg = ImageConfig::default();
        let l = layer(Compression::Gzip);
        let img = Image::build("t", vec![l.clone()], &cfg, Platform::linux("arm64")).unwrap();
        let m: Value = serde_json::from_slice(&img.manifest.data).unwrap();
        assert_eq!(m["mediaType"], MEDIA_OCI_MANIFEST);
        assert_eq!(m["config"]["digest"], img.config.digest.as_str());
        assert_eq!(m["layers"][0]["digest"], l.blob.digest.as_str());
        assert_eq!(m["layers"][0]["size"], l.blob.size());
        let c = img.config_json();
        assert_eq!(c["rootfs"]["diff_ids"][0], l.diff_id.as_str());
        assert_eq!(c["architecture"], "arm64");
    }

    #[test]
    fn docker_manifest_rejects_zstd_layers() {
        let cfg = ImageConfig::default();
        let err = Image::build_with_format(
            "t",
            vec![layer(Compression::Zstd)],
            &cfg,
            Platform::host(),
            ManifestFormat::DockerV2,
        )
        .unwrap_err();
        assert!(err.to_string().contains("gzip"), "{err}");
    }
}

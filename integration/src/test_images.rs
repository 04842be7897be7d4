//! The catalogue of test images, built once per test process from Debian's
//! busybox-static. Applets are hard links to `/bin/busybox`: busybox-static's shell
//! runs applets in-process when it recognises the name, and a symlink would make
//! masking or replacing `/bin/busybox` behave differently from a real image.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use rand_core::{RngCore, SeedableRng};

use crate::error::{Error, Result};
use crate::image_builder::{
    Compression, Image, ImageConfig, ImageIndex, Layer, LayerBuilder, ManifestFormat, Platform,
};

/// Where Debian's busybox-static installs the binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// The PATH every test image sets.
pub const IMAGE_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Applets linked into `/bin` of every busybox-based image.
pub const APPLETS: &[&str] = &[
    "sh",
    "ash",
    "sleep",
    "httpd",
    "wget",
    "echo",
    "cat",
    "ls",
    "id",
    "true",
    "false",
    "env",
    "pwd",
    "hostname",
    "ps",
    "mount",
    "umount",
    "stty",
    "test",
    "[",
    "printf",
    "grep",
    "sed",
    "awk",
    "head",
    "tail",
    "wc",
    "mkdir",
    "rmdir",
    "rm",
    "touch",
    "cp",
    "mv",
    "ln",
    "chmod",
    "chown",
    "kill",
    "dd",
    "df",
    "du",
    "find",
    "uname",
    "date",
    "whoami",
    "nc",
    "ip",
    "ifconfig",
    "ping",
    "nslookup",
    "sort",
    "uniq",
    "tee",
    "tr",
    "cut",
    "xargs",
    "yes",
    "seq",
    "stat",
    "readlink",
    "realpath",
    "sync",
    "timeout",
    "nproc",
    "free",
    "top",
    "cmp",
    "diff",
    "sha256sum",
    "md5sum",
    "basename",
    "dirname",
    "expr",
    "mkfifo",
    "mknod",
    "hexdump",
    "od",
    "tty",
    "setsid",
    "nsenter",
    "unshare",
    "usleep",
    "which",
    "uptime",
    "vi",
    "tar",
    "gzip",
    "gunzip",
    "zcat",
    "groups",
    "su",
    "chroot",
    "pidof",
    "killall",
    "base64",
    "dmesg",
    "netstat",
    "route",
    "arp",
    "traceroute",
    "telnet",
    "mktemp",
    "less",
    "more",
    "tac",
    "rev",
    "fold",
    "nl",
    "xxd",
    "bc",
    "dc",
    "truncate",
    "fallocate",
    "ionice",
    "renice",
    "taskset",
    "time",
    "watch",
    "sysctl",
    "cttyhack",
    "setpriv",
];

/// `/etc/passwd` of the busybox images: root and an unprivileged `user` (1000).
pub const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
user:x:1000:1000:user:/home/user:/bin/sh\n\
nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";

/// `/etc/group` of the busybox images (user 1000 is also in group `extra`, 1001).
pub const GROUP: &str = "root:x:0:\nuser:x:1000:\nextra:x:1001:user\nnogroup:x:65534:\n";

/// True when Debian's busybox-static is installed, which every test image needs.
pub fn busybox_available() -> bool {
    Path::new(BUSYBOX).is_file()
}

fn err(image: &str) -> impl Fn(Error) -> Error + '_ {
    move |e| match e {
        Error::Build { message, .. } => Error::Build {
            image: image.into(),
            message,
        },
        other => other,
    }
}

/// The busybox root filesystem layer shared by every image (gzip).
pub fn busybox_layer() -> Result<Layer> {
    static LAYER: OnceLock<std::result::Result<Layer, String>> = OnceLock::new();
    LAYER
        .get_or_init(|| build_busybox_layer().map_err(|e| e.to_string()))
        .clone()
        .map_err(|message| Error::Build {
            image: "busybox".into(),
            message,
        })
}

fn build_busybox_layer() -> Result<Layer> {
    let mut b = LayerBuilder::new();
    for d in [
        "bin", "etc", "root", "home", "usr", "usr/bin", "var", "dev", "proc", "sys",
    ] {
        b.dir(d, 0o755)?;
    }
    b.dir("root", 0o700)?;
    b.dir("tmp", 0o1777)?;
    b.dir("var/tmp", 0o1777)?;
    b.dir_owned("home/user", 0o755, 1000)?;
    b.file_from_host("bin/busybox", 0o755, Path::new(BUSYBOX))?;
    for applet in APPLETS {
        b.hardlink(&format!("bin/{applet}"), "bin/busybox")?;
    }
    // Scripts and kubelet probes often say /usr/bin/env or /usr/bin/test.
    for applet in ["env", "test"] {
        b.hardlink(&format!("usr/bin/{applet}"), "bin/busybox")?;
    }
    b.file("etc/passwd", 0o644, PASSWD.as_bytes())?;
    b.file("etc/group", 0o644, GROUP.as_bytes())?;
    b.file("etc/hostname", 0o644, b"busybox\n")?;
    b.finish(Compression::Gzip)
}

fn base_config() -> ImageConfig {
    ImageConfig {
        env: vec![IMAGE_PATH.into()],
        cmd: Some(vec!["sh".into()]),
        ..Default::default()
    }
}

macro_rules! cached {
    ($name:literal, $ty:ty, $build:expr) => {{
        static CELL: OnceLock<std::result::Result<$ty, String>> = OnceLock::new();
        CELL.get_or_init(|| {
            let build = || -> Result<$ty> { $build };
            build().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|message| Error::Build {
            image: $name.into(),
            message: message.clone(),
        })
    }};
}

/// `busybox`: the busybox root filesystem, `Cmd ["sh"]`.
pub fn busybox() -> Result<&'static Image> {
    cached!("busybox", Image, {
        Image::build(
            "busybox",
            vec![busybox_layer()?],
            &base_config(),
            Platform::host(),
        )
    })
}

/// The same content as [`busybox`] written as a Docker v2 schema 2 manifest.
pub fn busybox_docker() -> Result<&'static Image> {
    cached!("busybox-docker", Image, {
        Image::build_with_format(
            "busybox-docker",
            vec![busybox_layer()?],
            &base_config(),
            Platform::host(),
            ManifestFormat::DockerV2,
        )
    })
}

/// What the `layered` image's `/data` must look like once its layers are applied:
/// (path, content) of every regular file, sorted. Directories holding them exist.
pub fn layered_expected_files() -> Vec<(String, String)> {
    let mut v = vec![
        ("data/keep.txt".to_string(), "keep\n".to_string()),
        ("data/changed.txt".to_string(), "upper\n".to_string()),
        ("data/opaque/new.txt".to_string(), "new\n".to_string()),
    ];
    for i in 0..LAYERED_DIR_FILES {
        v.push((format!("data/many/file-{i:03}"), format!("content {i}\n")));
    }
    v.sort();
    v
}

/// Paths the upper layer of `layered` deletes; none may exist in the rootfs.
pub const LAYERED_DELETED: &[&str] = &[
    "data/remove.txt",
    "data/gone",
    "data/gone/inner.txt",
    "data/opaque/old-a.txt",
    "data/opaque/sub",
    "data/opaque/sub/old-c.txt",
];

const LAYERED_DIR_FILES: usize = 50;

/// `layered`: busybox + a lower layer with files and a directory full of files + an
/// upper layer that deletes a file and a directory (`.wh.<name>`), makes `opaque/`
/// opaque (`.wh..wh..opq`) with one new file, and rewrites `changed.txt`.
pub fn layered() -> Result<&'static Image> {
    cached!("layered", Image, {
        let (lower, upper) =
            layered_layers(Compression::Gzip, Compression::Gzip).map_err(err("layered"))?;
        Image::build(
            "layered",
            vec![busybox_layer()?, lower, upper],
            &base_config(),
            Platform::host(),
        )
    })
}

/// `mixed`: the `layered` content with the lower layer uncompressed and the upper one
/// zstd, to exercise every layer media type.
pub fn mixed() -> Result<&'static Image> {
    cached!("mixed", Image, {
        let (lower, upper) =
            layered_layers(Compression::None, Compression::Zstd).map_err(err("mixed"))?;
        Image::build(
            "mixed",
            vec![busybox_layer()?, lower, upper],
            &base_config(),
            Platform::host(),
        )
    })
}

fn layered_layers(lower_c: Compression, upper_c: Compression) -> Result<(Layer, Layer)> {
    let mut lower = LayerBuilder::new();
    lower.dir("data", 0o755)?;
    lower.file("data/keep.txt", 0o644, b"keep\n")?;
    lower.file("data/remove.txt", 0o644, b"remove me\n")?;
    lower.file("data/changed.txt", 0o644, b"lower\n")?;
    lower.dir("data/gone", 0o755)?;
    lower.file("data/gone/inner.txt", 0o644, b"inner\n")?;
    lower.dir("data/many", 0o755)?;
    for i in 0..LAYERED_DIR_FILES {
        lower.file(
            &format!("data/many/file-{i:03}"),
            0o644,
            format!("content {i}\n").as_bytes(),
        )?;
    }
    lower.dir("data/opaque", 0o755)?;
    lower.file("data/opaque/old-a.txt", 0o644, b"a\n")?;
    lower.dir("data/opaque/sub", 0o755)?;
    lower.file("data/opaque/sub/old-c.txt", 0o644, b"c\n")?;

    let mut upper = LayerBuilder::new();
    upper.dir("data", 0o755)?;
    upper.whiteout("data/remove.txt")?;
    upper.whiteout("data/gone")?;
    upper.file("data/changed.txt", 0o644, b"upper\n")?;
    upper.dir("data/opaque", 0o755)?;
    upper.opaque("data/opaque")?;
    upper.file("data/opaque/new.txt", 0o644, b"new\n")?;
    Ok((lower.finish(lower_c)?, upper.finish(upper_c)?))
}

/// The `configured` image's ENTRYPOINT, CMD, USER, WORKDIR, env and labels.
pub fn configured_config() -> ImageConfig {
    let mut labels = BTreeMap::new();
    labels.insert("org.berth.test".to_string(), "configured".to_string());
    labels.insert(
        "org.opencontainers.image.title".to_string(),
        "configured".to_string(),
    );
    ImageConfig {
        user: Some("1000".into()),
        working_dir: Some("/work".into()),
        env: vec![IMAGE_PATH.into(), "FOO=bar".into()],
        entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
        cmd: Some(vec!["echo hello".into()]),
        stop_signal: Some("SIGQUIT".into()),
        labels,
        exposed_ports: vec!["8080/tcp".into()],
        volumes: vec![],
    }
}

/// `configured`: busybox + `/work` owned by 1000, with [`configured_config`].
pub fn configured() -> Result<&'static Image> {
    cached!("configured", Image, {
        let mut b = LayerBuilder::new();
        b.dir_owned("work", 0o755, 1000)?;
        b.file_owned("work/README", 0o644, 1000, b"configured image\n")?;
        let layer = b.finish(Compression::Gzip).map_err(err("configured"))?;
        Image::build(
            "configured",
            vec![busybox_layer()?, layer],
            &configured_config(),
            Platform::host(),
        )
    })
}

/// The architecture `multiarch` lists besides the host's (it need not run).
pub fn foreign_architecture() -> &'static str {
    if crate::image_builder::host_architecture() == "arm64" {
        "amd64"
    } else {
        "arm64"
    }
}

/// `multiarch`: an OCI index with a runnable host-platform image and one for
/// [`foreign_architecture`]. Each carries `/etc/arch` naming its architecture.
pub fn multiarch() -> Result<&'static ImageIndex> {
    cached!("multiarch", ImageIndex, {
        multiarch_index(ManifestFormat::Oci)
    })
}

/// `multiarch` written as a Docker manifest list of Docker v2 manifests.
pub fn multiarch_docker() -> Result<&'static ImageIndex> {
    cached!("multiarch-docker", ImageIndex, {
        multiarch_index(ManifestFormat::DockerV2)
    })
}

fn multiarch_index(format: ManifestFormat) -> Result<ImageIndex> {
    let mut images = Vec::new();
    for arch in [
        crate::image_builder::host_architecture(),
        foreign_architecture(),
    ] {
        let mut b = LayerBuilder::new();
        b.dir("etc", 0o755)?;
        b.file("etc/arch", 0o644, format!("{arch}\n").as_bytes())?;
        let marker = b.finish(Compression::Gzip)?;
        images.push(Image::build_with_format(
            "multiarch",
            vec![busybox_layer()?, marker],
            &base_config(),
            Platform::linux(arch),
            format,
        )?);
    }
    ImageIndex::build("multiarch", images, format)
}

/// Number of data layers in `large` and bytes of random data in each.
pub const LARGE_LAYERS: usize = 4;
pub const LARGE_LAYER_BYTES: usize = 25 * 1000 * 1000;
const LARGE_FILES_PER_LAYER: usize = 5;

/// `large`: busybox + 4 layers of 25 MB seeded random (incompressible) data, ~100 MB,
/// for pull benchmarks. Layers are gzip made of stored blocks: the size a real gzip
/// would reach on such data, without the cost of trying to compress it.
///
/// Generating and hashing 100 MB takes ~20 s in a debug build, so the layers are
/// built in parallel and cached under `$TMPDIR/berth-integration-cache/`, keyed by
/// a hash of every input that shapes them (see [`large_cache_dir`]).
pub fn large() -> Result<&'static Image> {
    cached!("large", Image, {
        let built: Vec<Result<Layer>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..LARGE_LAYERS)
                .map(|i| s.spawn(move || cached_large_layer(i)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(Error::Build {
                            image: "large".into(),
                            message: "layer builder thread panicked".into(),
                        })
                    })
                })
                .collect()
        });
        let mut layers = vec![busybox_layer()?];
        for layer in built {
            layers.push(layer.map_err(err("large"))?);
        }
        Image::build("large", layers, &base_config(), Platform::host())
    })
}

/// Bump when the way large layers are generated changes, to invalidate caches.
const LARGE_GENERATOR_VERSION: u32 = 1;

/// The cache directory of the `large` image's layers.
pub fn large_cache_dir() -> std::path::PathBuf {
    // The compressor's output is part of the key: a different flate2 backend or
    // version makes different bytes, and a cache built by it must not be reused.
    let fingerprint = (|| -> Result<String> {
        let mut b = LayerBuilder::new();
        b.file("fingerprint", 0o644, &vec![7u8; 256 << 10])?;
        Ok(b.finish(Compression::GzipStored)?.blob.digest)
    })()
    .unwrap_or_default();
    let key = crate::image_builder::sha256_digest(
        format!(
            "v{LARGE_GENERATOR_VERSION} layers={LARGE_LAYERS} bytes={LARGE_LAYER_BYTES} \
             files={LARGE_FILES_PER_LAYER} mtime={} compressor={fingerprint}",
            crate::image_builder::FIXED_MTIME
        )
        .as_bytes(),
    );
    std::env::temp_dir()
        .join("berth-integration-cache")
        .join(format!("large-{}", &key[7..23]))
}

/// A cached layer is `layerN.blob` (compressed bytes) + `layerN.meta`
/// (`<digest> <diff_id> <size>`), both written to a temp name then renamed, so a
/// half-written cache entry is never read.
fn cached_large_layer(index: usize) -> Result<Layer> {
    let dir = large_cache_dir();
    let blob_path = dir.join(format!("layer{index}.blob"));
    let meta_path = dir.join(format!("layer{index}.meta"));
    if let (Ok(meta), Ok(data)) = (
        std::fs::read_to_string(&meta_path),
        std::fs::read(&blob_path),
    ) {
        let parts: Vec<&str> = meta.split_whitespace().collect();
        if let [digest, diff_id, size] = parts[..] {
            if size.parse::<usize>().ok() == Some(data.len()) {
                return Ok(Layer {
                    blob: crate::image_builder::Blob {
                        media_type: crate::image_builder::MEDIA_OCI_LAYER_GZIP.into(),
                        digest: digest.into(),
                        data,
                    },
                    diff_id: diff_id.into(),
                    compression: Compression::GzipStored,
                });
            }
        }
    }
    let layer = large_layer(index)?;
    // The cache is an optimisation: failing to write it must not fail the test.
    let _ = write_cache_entry(&dir, &blob_path, &meta_path, &layer);
    Ok(layer)
}

fn write_cache_entry(
    dir: &Path,
    blob_path: &Path,
    meta_path: &Path,
    layer: &Layer,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::fs::write(tmp.path(), &layer.blob.data)?;
    tmp.persist(blob_path).map_err(|e| e.error)?;
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    let meta = format!(
        "{} {} {}\n",
        layer.blob.digest,
        layer.diff_id,
        layer.blob.size()
    );
    std::fs::write(tmp.path(), meta)?;
    tmp.persist(meta_path).map_err(|e| e.error)?;
    Ok(())
}

fn large_layer(index: usize) -> Result<Layer> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0xbe27_0000 + index as u64);
    let mut b = LayerBuilder::new();
    b.dir("large", 0o755)?;
    let per_file = LARGE_LAYER_BYTES / LARGE_FILES_PER_LAYER;
    let mut buf = vec![0u8; per_file];
    for f in 0..LARGE_FILES_PER_LAYER {
        rng.fill_bytes(&mut buf);
        b.file(&format!("large/layer{index}-file{f}.bin"), 0o644, &buf)?;
    }
    b.finish(Compression::GzipStored)
}

/// `pause`: busybox whose entrypoint sleeps forever; containerd's `sandbox_image`
/// in the side-by-side benchmarks (berthd needs no pause image).
pub fn pause() -> Result<&'static Image> {
    cached!("pause", Image, {
        let config = ImageConfig {
            env: vec![IMAGE_PATH.into()],
            entrypoint: Some(vec!["/bin/sleep".into(), "infinity".into()]),
            user: Some("65534:65534".into()),
            ..Default::default()
        };
        Image::build("pause", vec![busybox_layer()?], &config, Platform::host())
    })
}

/// The page the `nginx` stand-in serves at `/`.
pub const NGINX_PAGE: &str =
    "<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head>\n\
<body><h1>Welcome to nginx!</h1><p>busybox httpd standing in for nginx.</p></body></html>\n";

/// The `nginx` stand-in's entrypoint: busybox httpd on port 80 in the
/// foreground of a shell that ends it and exits 0 on SIGTERM (as nginx's
/// graceful stop does), so a stop ends with exit 0 / Completed.
pub const NGINX_ENTRYPOINT: &str = "#!/bin/sh\n\
httpd -f -p 80 -h /usr/share/nginx/html &\n\
pid=$!\n\
trap 'kill $pid 2>/dev/null; exit 0' TERM INT QUIT\n\
while kill -0 $pid 2>/dev/null; do wait $pid; done\n\
exit 1\n";

/// `nginx`: busybox + [`NGINX_ENTRYPOINT`] as ENTRYPOINT serving
/// [`NGINX_PAGE`]; the kubelet traces' `e2e-test-images/nginx:1.14-2`.
pub fn nginx() -> Result<&'static Image> {
    cached!("nginx", Image, {
        let mut b = LayerBuilder::new();
        b.file("docker-entrypoint.sh", 0o755, NGINX_ENTRYPOINT.as_bytes())?;
        b.dir("usr", 0o755)?;
        b.dir("usr/share", 0o755)?;
        b.dir("usr/share/nginx", 0o755)?;
        b.dir("usr/share/nginx/html", 0o755)?;
        b.file(
            "usr/share/nginx/html/index.html",
            0o644,
            NGINX_PAGE.as_bytes(),
        )?;
        let layer = b.finish(Compression::Gzip).map_err(err("nginx"))?;
        let config = ImageConfig {
            env: vec![IMAGE_PATH.into()],
            entrypoint: Some(vec!["/docker-entrypoint.sh".into()]),
            exposed_ports: vec!["80/tcp".into()],
            ..Default::default()
        };
        Image::build(
            "nginx",
            vec![busybox_layer()?, layer],
            &config,
            Platform::host(),
        )
    })
}

/// The images the kubelet traces name, as (repository, tag, image): the
/// Kubernetes e2e images `busybox:1.29-2` (busybox, no USER) and
/// `nginx:1.14-2` ([`nginx`]). Pushed under these names, they are reached
/// through registry mirrors for `registry.k8s.io` and `127.0.0.1:5000`.
pub fn kubelet_trace_images() -> Result<Vec<(&'static str, &'static str, &'static Image)>> {
    Ok(vec![
        ("e2e-test-images/busybox", "1.29-2", busybox()?),
        ("e2e-test-images/nginx", "1.14-2", nginx()?),
    ])
}

/// Every single-platform test image with the repository name tests push it under.
pub fn all_images() -> Result<Vec<(&'static str, &'static Image)>> {
    Ok(vec![
        ("busybox", busybox()?),
        ("busybox-docker", busybox_docker()?),
        ("layered", layered()?),
        ("mixed", mixed()?),
        ("configured", configured()?),
        ("large", large()?),
        ("pause", pause()?),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::io::Read;

    /// Applies layers the way a runtime must (whiteouts, opaque dirs) onto a map of
    /// path -> file content (None for directories), to check the documented
    /// expectations of the catalogue against the actual layer bytes.
    fn apply(layers: &[Layer]) -> BTreeMap<String, Option<Vec<u8>>> {
        let mut fs: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
        for layer in layers {
            let tar = match layer.compression {
                Compression::None => layer.blob.data.clone(),
                Compression::Zstd => zstd::decode_all(&layer.blob.data[..]).unwrap(),
                _ => {
                    let mut v = Vec::new();
                    flate2::read::GzDecoder::new(&layer.blob.data[..])
                        .read_to_end(&mut v)
                        .unwrap();
                    v
                }
            };
            let mut ar = tar::Archive::new(&tar[..]);
            let mut opaque_done = Vec::new();
            for e in ar.entries().unwrap() {
                let mut e = e.unwrap();
                let path = e
                    .path()
                    .unwrap()
                    .to_string_lossy()
                    .trim_end_matches('/')
                    .to_string();
                let (dir, name) = path.rsplit_once('/').unwrap_or(("", &path));
                let prefix = |d: &str| {
                    if d.is_empty() {
                        String::new()
                    } else {
                        format!("{d}/")
                    }
                };
                if name == ".wh..wh..opq" {
                    let p = prefix(dir);
                    fs.retain(|k, _| !k.starts_with(&p));
                    opaque_done.push(dir.to_string());
                } else if let Some(victim) = name.strip_prefix(".wh.") {
                    let victim = format!("{}{victim}", prefix(dir));
                    let sub = format!("{victim}/");
                    fs.retain(|k, _| k != &victim && !k.starts_with(&sub));
                } else if e.header().entry_type().is_dir() {
                    fs.insert(path, None);
                } else {
                    let mut data = Vec::new();
                    e.read_to_end(&mut data).unwrap();
                    fs.insert(path, Some(data));
                }
            }
        }
        fs
    }

    fn data_files(fs: &BTreeMap<String, Option<Vec<u8>>>) -> Vec<(String, String)> {
        fs.iter()
            .filter(|(k, v)| k.starts_with("data/") && v.is_some())
            .map(|(k, v)| (k.clone(), String::from_utf8(v.clone().unwrap()).unwrap()))
            .collect()
    }

    #[test]
    fn layered_image_matches_its_documented_result() {
        if !busybox_available() {
            eprintln!("skipped: {BUSYBOX} missing (apt-get install busybox-static)");
            return;
        }
        for img in [layered().unwrap(), mixed().unwrap()] {
            let fs = apply(&img.layers);
            assert_eq!(data_files(&fs), layered_expected_files(), "{}", img.name);
            for gone in LAYERED_DELETED {
                assert!(!fs.contains_key(*gone), "{}: {gone} survived", img.name);
            }
            assert!(fs.contains_key("data/opaque"));
        }
        let kinds: Vec<_> = mixed()
            .unwrap()
            .layers
            .iter()
            .map(|l| l.compression)
            .collect();
        assert_eq!(
            kinds,
            [Compression::Gzip, Compression::None, Compression::Zstd]
        );
    }

    #[test]
    fn busybox_applets_are_hard_links() {
        if !busybox_available() {
            eprintln!("skipped: {BUSYBOX} missing (apt-get install busybox-static)");
            return;
        }
        let layer = busybox_layer().unwrap();
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(&layer.blob.data[..])
            .read_to_end(&mut tar)
            .unwrap();
        let mut ar = tar::Archive::new(&tar[..]);
        let mut links = BTreeMap::new();
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            if e.header().entry_type() == tar::EntryType::Link {
                let target = e
                    .link_name()
                    .unwrap()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                links.insert(e.path().unwrap().to_string_lossy().into_owned(), target);
            }
        }
        for applet in [
            "sh", "sleep", "httpd", "wget", "ps", "mount", "stty", "hostname",
        ] {
            assert_eq!(
                links.get(&format!("bin/{applet}")).map(String::as_str),
                Some("bin/busybox")
            );
        }
    }

    #[test]
    fn large_image_is_about_100_mb_and_reproducible() {
        if !busybox_available() {
            eprintln!("skipped: {BUSYBOX} missing (apt-get install busybox-static)");
            return;
        }
        let t = std::time::Instant::now();
        let img = large().unwrap();
        eprintln!("large image built in {:?}", t.elapsed());
        let size = img.layers_size();
        assert!((100_000_000..110_000_000).contains(&size), "size {size}");
        assert_eq!(img.layers.len(), LARGE_LAYERS + 1);
        // Same seed, same bytes: a fresh build of one layer matches what the image
        // (possibly from the cache) carries.
        let fresh = large_layer(2).unwrap();
        assert_eq!(fresh.blob.digest, img.layers[3].blob.digest);
        assert_eq!(fresh.diff_id, img.layers[3].diff_id);
    }
}

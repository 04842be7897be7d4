//! The OCI and Docker manifest, index and config documents a pull reads, and
//! the choice of this node's platform from an index.

use super::*;

#[derive(Debug, Deserialize)]
pub(super) struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub(super) media_type: String,
    pub(super) digest: String,
    #[serde(default)]
    pub(super) size: u64,
    #[serde(default)]
    pub(super) platform: Option<Platform>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Platform {
    #[serde(default)]
    pub(super) architecture: String,
    #[serde(default)]
    pub(super) os: String,
    #[serde(default)]
    pub(super) variant: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct Index {
    pub(super) manifests: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Manifest {
    pub(super) config: Descriptor,
    #[serde(default)]
    pub(super) layers: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ConfigFile {
    #[serde(default)]
    pub(super) architecture: String,
    #[serde(default)]
    pub(super) os: String,
    #[serde(default)]
    pub(super) variant: String,
    #[serde(default)]
    pub(super) created: Option<String>,
    #[serde(default)]
    pub(super) config: Option<ImageConfig>,
    pub(super) rootfs: RootFs,
}

#[derive(Debug, Deserialize)]
pub(super) struct RootFs {
    #[serde(default)]
    pub(super) diff_ids: Vec<String>,
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

pub(super) fn select_platform<'a>(list: &'a [Descriptor], image: &str) -> Result<&'a Descriptor> {
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

pub(super) fn parse_json<'a, T: Deserialize<'a>>(bytes: &'a [u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::FailedPrecondition(format!("{what}: invalid json: {e}")))
}

pub(super) fn check_digest(d: &str, what: &str) -> Result<()> {
    reference::validate_digest(d).map_err(|e| Error::FailedPrecondition(format!("{what}: {e}")))
}

//! Image service (placeholder until the image store lands: same public shape).
use std::{path::Path, sync::Arc};

use serde::{Deserialize, Serialize};

use crate::{error::Result, store::Store};

/// Registry access configuration (the `[registry]` section).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// containerd-style hosts dir: `<config_path>/<host>/hosts.toml`.
    pub config_path: std::path::PathBuf,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            config_path: "/etc/berth/certs.d".into(),
        }
    }
}

/// The image store facade.
pub struct ImageService;

impl ImageService {
    /// Opens the image store under `root`.
    pub fn open(_root: &Path, _store: Arc<Store>, _cfg: RegistryConfig) -> Result<Self> {
        Ok(ImageService)
    }
}

//! One-call setup for end-to-end tests: a registry holding the test images and a
//! berthd configured to pull from it, plus CRI clients.

use crate::berthd::{Berthd, BerthdOptions};
use crate::client::Cri;
use crate::error::Result;
use crate::registry::{Registry, RegistryOptions};
use crate::test_images;

/// Tag every image is pushed under.
pub const TAG: &str = "latest";

/// A registry with the test images and a berthd that reaches it.
#[derive(Debug)]
pub struct TestEnv {
    pub cri: Cri,
    // Drop order: berthd (and its containers) before the registry.
    pub berthd: Berthd,
    pub registry: Registry,
}

/// What [`TestEnv::start_with`] sets up.
#[derive(Clone, Debug, Default)]
pub struct TestEnvOptions {
    pub registry: RegistryOptions,
    /// berthd options; a `[registry]` table pointing `config_path` at the test
    /// registry's hosts dir is appended to `config_toml` unless it already has one.
    pub berthd: BerthdOptions,
    /// Also push the ~100 MB `large` image (slow to build the first time).
    pub with_large: bool,
}

impl TestEnv {
    /// Plain-HTTP registry, default berthd.
    pub async fn start() -> Result<TestEnv> {
        Self::start_with(TestEnvOptions::default()).await
    }

    /// Starts the registry, pushes every test image as `<name>:latest` (and the
    /// multi-platform ones as indexes), writes its `hosts.toml`, then starts
    /// berthd with that hosts dir as `registry.config_path`.
    pub async fn start_with(options: TestEnvOptions) -> Result<TestEnv> {
        let registry = Registry::start_with(options.registry).await?;
        let client = registry.client()?;
        for (repo, image) in test_images::all_images()? {
            if repo == "large" && !options.with_large {
                continue;
            }
            client.push_image(repo, TAG, image).await?;
        }
        client
            .push_index("multiarch", TAG, test_images::multiarch()?)
            .await?;
        client
            .push_index("multiarch-docker", TAG, test_images::multiarch_docker()?)
            .await?;
        let certs_d = registry.dir().join("certs.d");
        registry.write_hosts_toml(&certs_d)?;
        let mut berthd_options = options.berthd;
        if !berthd_options.config_toml.contains("[registry]") {
            berthd_options.config_toml.push_str(&format!(
                "\n[registry]\nconfig_path = \"{}\"\n",
                certs_d.display()
            ));
        }
        let berthd = Berthd::start_with(berthd_options).await?;
        let cri = berthd.client().await?;
        Ok(TestEnv {
            cri,
            berthd,
            registry,
        })
    }

    /// `127.0.0.1:PORT/<name>:latest` for a test image name (`busybox`,
    /// `layered`, `mixed`, `configured`, `multiarch`, `pause`, …).
    pub fn image(&self, name: &str) -> String {
        self.registry.image_ref(name, TAG)
    }
}

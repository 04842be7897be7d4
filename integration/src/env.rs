//! One-call setup for end-to-end tests: a registry holding the test images and a
//! berthd configured to pull from it, plus CRI clients and the few calls every
//! pod test makes (a pod config, run a pod, create+start a container, remove).

use std::collections::HashMap;

use berth_proto::v1::*;

use crate::berthd::{Berthd, BerthdOptions};
use crate::client::Cri;
use crate::error::{Error, Result};
use crate::registry::{Registry, RegistryOptions};
use crate::test_images;

/// Tag every image is pushed under.
pub const TAG: &str = "latest";

/// A CNI config that gives a pod only its loopback interface: pods need a
/// network config (as with any runtime), and tests that are not about
/// networking want no bridge and no addresses.
pub const LOOPBACK_CONFLIST: &str =
    r#"{"cniVersion": "1.0.0", "name": "lo-only", "plugins": [{"type": "loopback"}]}"#;

/// A registry with the test images and a berthd that reaches it.
#[derive(Debug)]
pub struct TestEnv {
    pub cri: Cri,
    // Drop order: berthd (and its containers) before the registry.
    pub berthd: Berthd,
    pub registry: Registry,
    /// Parent of every pod's `log_directory` made by [`TestEnv::pod_config`].
    pub logs: tempfile::TempDir,
    _cni: Option<tempfile::TempDir>,
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
    /// Point berthd's CNI conf dir at a private dir holding only
    /// [`LOOPBACK_CONFLIST`] (overrides `berthd`'s CNI conf dir).
    pub loopback_cni: bool,
}

impl TestEnv {
    /// Plain-HTTP registry, default berthd.
    pub async fn start() -> Result<TestEnv> {
        Self::start_with(TestEnvOptions::default()).await
    }

    /// Plain-HTTP registry, berthd with the loopback-only CNI config, and the
    /// `busybox` image already pulled: what a pod lifecycle test needs.
    pub async fn start_for_pods() -> Result<TestEnv> {
        let mut env = Self::start_with(TestEnvOptions {
            loopback_cni: true,
            ..Default::default()
        })
        .await?;
        env.pull("busybox").await?;
        Ok(env)
    }

    /// Like [`TestEnv::start_for_pods`] but with berthd's CNI conf dir at
    /// `conf_dir` (e.g. where a [`crate::bridge::TestBridge`] wrote its conflist).
    pub async fn start_for_pods_on_cni(conf_dir: &std::path::Path) -> Result<TestEnv> {
        let mut env = Self::start_with(TestEnvOptions {
            berthd: BerthdOptions::default().cni_conf_dir(conf_dir),
            ..Default::default()
        })
        .await?;
        env.pull("busybox").await?;
        Ok(env)
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
        let cni = if options.loopback_cni {
            let dir = tempfile::tempdir().map_err(Error::io("tempdir"))?;
            let file = dir.path().join("99-loopback.conflist");
            std::fs::write(&file, LOOPBACK_CONFLIST).map_err(Error::io(&file))?;
            berthd_options = berthd_options.cni_conf_dir(dir.path());
            Some(dir)
        } else {
            None
        };
        let berthd = Berthd::start_with(berthd_options).await?;
        let cri = berthd.client().await?;
        Ok(TestEnv {
            cri,
            berthd,
            registry,
            logs: tempfile::tempdir().map_err(Error::io("tempdir"))?,
            _cni: cni,
        })
    }

    /// `127.0.0.1:PORT/<name>:latest` for a test image name (`busybox`,
    /// `layered`, `mixed`, `configured`, `multiarch`, `pause`, …).
    pub fn image(&self, name: &str) -> String {
        self.registry.image_ref(name, TAG)
    }

    /// Pulls the test image `name` through berthd; returns its reference.
    pub async fn pull(&mut self, name: &str) -> Result<String> {
        let image = self.image(name);
        self.cri
            .image
            .pull_image(PullImageRequest {
                image: Some(ImageSpec {
                    image: image.clone(),
                    ..Default::default()
                }),
                auth: None,
                sandbox_config: None,
            })
            .await
            .map_err(Error::rpc("PullImage"))?;
        Ok(image)
    }

    /// A pod config named `name` (namespace `default`, uid `uid-<name>`, label
    /// `app=<name>`), logging under [`TestEnv::logs`]`/<name>`.
    pub fn pod_config(&self, name: &str) -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: format!("uid-{name}"),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname: name.into(),
            log_directory: self.logs.path().join(name).display().to_string(),
            labels: HashMap::from([("app".to_string(), name.to_string())]),
            ..Default::default()
        }
    }

    /// RunPodSandbox with `config`; returns the pod id.
    pub async fn run_pod(&mut self, config: &PodSandboxConfig) -> Result<String> {
        Ok(self
            .cri
            .runtime
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await
            .map_err(Error::rpc("RunPodSandbox"))?
            .into_inner()
            .pod_sandbox_id)
    }

    /// CreateContainer then StartContainer; returns the container id.
    pub async fn run_container(
        &mut self,
        pod_id: &str,
        pod_config: &PodSandboxConfig,
        config: ContainerConfig,
    ) -> Result<String> {
        let id = self
            .cri
            .runtime
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod_id.into(),
                config: Some(config),
                sandbox_config: Some(pod_config.clone()),
            })
            .await
            .map_err(Error::rpc("CreateContainer"))?
            .into_inner()
            .container_id;
        self.cri
            .runtime
            .start_container(StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .map_err(Error::rpc("StartContainer"))?;
        Ok(id)
    }

    /// A pod named `name` with one busybox container (also named `name`)
    /// running `sh -c script`, with stdin open if `stdin`; returns
    /// (pod id, container id).
    pub async fn run_busybox_pod(
        &mut self,
        name: &str,
        script: &str,
        stdin: bool,
    ) -> Result<(String, String)> {
        let pod_config = self.pod_config(name);
        let pod = self.run_pod(&pod_config).await?;
        let container = ContainerConfig {
            stdin,
            ..container_config(name, &self.image("busybox"), &["sh", "-c", script])
        };
        let id = self.run_container(&pod, &pod_config, container).await?;
        Ok((pod, id))
    }

    /// StopPodSandbox then RemovePodSandbox.
    pub async fn remove_pod(&mut self, pod_id: &str) -> Result<()> {
        self.cri
            .runtime
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: pod_id.into(),
            })
            .await
            .map_err(Error::rpc("StopPodSandbox"))?;
        self.cri
            .runtime
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: pod_id.into(),
            })
            .await
            .map_err(Error::rpc("RemovePodSandbox"))?;
        Ok(())
    }
}

/// A container config named `name` running `command` from `image`, logging to
/// `<name>.log` in its pod's log directory.
pub fn container_config(name: &str, image: &str, command: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        ..Default::default()
    }
}

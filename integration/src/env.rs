//! One-call setup for end-to-end tests and benchmarks: a registry holding the
//! test images, a berthd configured to pull from it, the pods' network
//! ([`Cni`]: loopback only, a private bridge, or berthd's CNI config as its
//! options give it, e.g. the test's own plugins from
//! [`crate::cni::TestPlugins::berthd_options`]) and, on request, containerd
//! beside it on the same registry and network; plus CRI clients and the few
//! calls every pod test makes (a pod config, run a pod, create+start a
//! container, remove).

use std::collections::HashMap;
use std::path::PathBuf;

use berth_proto::v1::*;

use crate::berthd::{Berthd, BerthdOptions};
use crate::bridge::TestBridge;
use crate::client::Cri;
use crate::containerd::{Containerd, ContainerdOptions};
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

/// The network berthd's pods get.
#[derive(Clone, Debug, Default)]
pub enum Cni {
    /// `berthd.cni_conf_dir` as it is (by default a private empty dir: no
    /// pod can run, as on a node without a network config).
    #[default]
    AsConfigured,
    /// Only a loopback interface ([`LOOPBACK_CONFLIST`] in a private dir).
    Loopback,
    /// A private [`TestBridge`] (real addresses, an iptables guard), with
    /// these plugins chained after the bridge; see [`TestEnv::bridge`].
    Bridge(Vec<serde_json::Value>),
}

/// A registry with the test images and a berthd that reaches it.
#[derive(Debug)]
pub struct TestEnv {
    pub cri: Cri,
    // Drop order: the daemons (and their containers) before the registry and
    // the network their pods were on.
    /// containerd beside berthd, when asked for ([`TestEnvOptions::containerd`],
    /// [`TestEnv::start_containerd`]).
    pub containerd: Option<Containerd>,
    pub berthd: Berthd,
    pub registry: Registry,
    /// The bridge of [`Cni::Bridge`].
    pub bridge: Option<TestBridge>,
    /// Parent of every pod's `log_directory` made by [`TestEnv::pod_config`].
    pub logs: tempfile::TempDir,
    /// The registry's `hosts.toml` dir berthd (and containerd) pull through.
    certs_d: PathBuf,
    _cni: Option<tempfile::TempDir>,
}

/// What [`TestEnv::start_with`] sets up.
#[derive(Clone, Debug, Default)]
pub struct TestEnvOptions {
    pub registry: RegistryOptions,
    /// berthd options; a `[registry]` table pointing `config_path` at the test
    /// registry's hosts dir is added to `config_toml`'s `[registry]` table (made
    /// when missing) unless the table already names one.
    pub berthd: BerthdOptions,
    /// Also push the ~100 MB `large` image (slow to build the first time).
    pub with_large: bool,
    /// The pods' network (the private dirs it makes override `berthd`'s CNI
    /// conf dir).
    pub cni: Cni,
    /// Test images to pull through berthd once it runs.
    pub pull: Vec<&'static str>,
    /// Also start containerd, on the same registry and CNI config.
    pub containerd: bool,
}

impl TestEnvOptions {
    /// Loopback-only pods with `busybox` pulled: what [`TestEnv::start_for_pods`]
    /// starts; change what differs.
    pub fn for_pods() -> TestEnvOptions {
        TestEnvOptions {
            cni: Cni::Loopback,
            pull: vec!["busybox"],
            ..Default::default()
        }
    }
}

impl TestEnv {
    /// Plain-HTTP registry, default berthd.
    pub async fn start() -> Result<TestEnv> {
        Self::start_with(TestEnvOptions::default()).await
    }

    /// Plain-HTTP registry, berthd with the loopback-only CNI config, and the
    /// `busybox` image already pulled: what a pod lifecycle test needs.
    pub async fn start_for_pods() -> Result<TestEnv> {
        Self::start_with(TestEnvOptions::for_pods()).await
    }

    /// Like [`TestEnv::start_for_pods`] with nothing pulled yet, for tests
    /// of pulls (or of what a pull leaves).
    pub async fn start_for_pods_unpulled() -> Result<TestEnv> {
        Self::start_with(TestEnvOptions {
            cni: Cni::Loopback,
            ..Default::default()
        })
        .await
    }

    /// Like [`TestEnv::start_for_pods`] but the pods are on a private
    /// [`TestBridge`] ([`TestEnv::bridge`]) with `more` plugins after it.
    pub async fn start_for_pods_on_bridge(more: Vec<serde_json::Value>) -> Result<TestEnv> {
        Self::start_with(TestEnvOptions {
            cni: Cni::Bridge(more),
            ..TestEnvOptions::for_pods()
        })
        .await
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
        let config_path = format!("config_path = \"{}\"\n", certs_d.display());
        let toml = &mut berthd_options.config_toml;
        match toml.find("[registry]\n") {
            None => toml.push_str(&format!("\n[registry]\n{config_path}")),
            // The test's own [registry] table without a hosts dir gets the
            // registry's, as its first key.
            Some(at) if !toml.contains("config_path") => {
                toml.insert_str(at + "[registry]\n".len(), &config_path);
            }
            Some(_) => {}
        }
        let (cni, bridge) = match &options.cni {
            Cni::AsConfigured => (None, None),
            Cni::Loopback => {
                let dir = tempfile::tempdir().map_err(Error::io("tempdir"))?;
                let file = dir.path().join("99-loopback.conflist");
                std::fs::write(&file, LOOPBACK_CONFLIST).map_err(Error::io(&file))?;
                (Some(dir), None)
            }
            Cni::Bridge(more) => {
                let bridge = TestBridge::new()?;
                let dir = tempfile::tempdir().map_err(Error::io("tempdir"))?;
                bridge.write_conf(dir.path(), more)?;
                (Some(dir), Some(bridge))
            }
        };
        if let Some(dir) = &cni {
            berthd_options = berthd_options.cni_conf_dir(dir.path());
        }
        let berthd = Berthd::start_with(berthd_options).await?;
        let cri = berthd.client().await?;
        let mut env = TestEnv {
            cri,
            containerd: None,
            berthd,
            registry,
            bridge,
            logs: tempfile::tempdir().map_err(Error::io("tempdir"))?,
            certs_d,
            _cni: cni,
        };
        for image in options.pull {
            env.pull(image).await?;
        }
        if options.containerd {
            env.start_containerd().await?;
        }
        Ok(env)
    }

    /// The registry's `hosts.toml` dir berthd pulls through.
    pub fn certs_d(&self) -> &std::path::Path {
        &self.certs_d
    }

    /// Starts containerd (see [`crate::containerd`]) beside berthd: the
    /// `pause` test image as its sandbox image, pulling through the same
    /// `hosts.toml`, its pods on berthd's CNI config. Its CRI clients are
    /// `env.containerd.as_ref().unwrap().client()`.
    pub async fn start_containerd(&mut self) -> Result<&Containerd> {
        let containerd = Containerd::start(ContainerdOptions {
            sandbox_image: self.image("pause"),
            registry_config_path: Some(self.certs_d.clone()),
            cni_conf_dir: Some(self.berthd.cni_conf_dir().to_path_buf()),
            cni_bin_dir: None,
        })
        .await?;
        Ok(self.containerd.insert(containerd))
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

    /// CreateContainer alone, the gRPC status kept for tests that expect a
    /// refusal; returns the container id.
    pub async fn create_container(
        &mut self,
        pod_id: &str,
        pod_config: &PodSandboxConfig,
        config: ContainerConfig,
    ) -> std::result::Result<String, tonic::Status> {
        self.cri
            .runtime
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod_id.into(),
                config: Some(config),
                sandbox_config: Some(pod_config.clone()),
            })
            .await
            .map(|r| r.into_inner().container_id)
    }

    /// CreateContainer then StartContainer; returns the container id.
    pub async fn run_container(
        &mut self,
        pod_id: &str,
        pod_config: &PodSandboxConfig,
        config: ContainerConfig,
    ) -> Result<String> {
        let id = self
            .create_container(pod_id, pod_config, config)
            .await
            .map_err(Error::rpc("CreateContainer"))?;
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

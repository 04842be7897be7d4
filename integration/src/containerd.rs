//! containerd (Debian's 1.6 + runc) as a child process with its own root, state,
//! socket, runc root and config in a tempdir: the side-by-side peer in benchmarks.
//! Its CRI plugin pulls from the local test registry through the same
//! `hosts.toml` layout berthd reads.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::client::Cri;
use crate::daemon::{Daemon, DaemonSpec};
use crate::error::{Error, Result};

/// Where Debian installs containerd; override with `BERTH_CONTAINERD`.
pub const DEFAULT_CONTAINERD: &str = "/usr/bin/containerd";

const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How to configure the CRI plugin.
#[derive(Clone, Debug, Default)]
pub struct ContainerdOptions {
    /// `sandbox_image`, e.g. the `pause` test image pushed to the local registry.
    pub sandbox_image: String,
    /// Registry host directory (`config_path`), e.g. one written by
    /// [`crate::registry::Registry::write_hosts_toml`].
    pub registry_config_path: Option<PathBuf>,
    /// CNI config dir; an empty private dir when None.
    pub cni_conf_dir: Option<PathBuf>,
    /// CNI plugin dir; Debian's `/usr/lib/cni` when None.
    pub cni_bin_dir: Option<PathBuf>,
}

/// A running containerd.
#[derive(Debug)]
pub struct Containerd {
    // Before `dir`: its log is printed (on panic) before the dir is removed.
    daemon: Daemon,
    dir: tempfile::TempDir,
}

impl Containerd {
    /// The containerd binary.
    pub fn binary() -> PathBuf {
        std::env::var_os("BERTH_CONTAINERD")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONTAINERD))
    }

    /// Why containerd cannot be started here, if it cannot.
    pub fn unavailable_reason() -> Option<String> {
        let bin = Self::binary();
        if !bin.is_file() {
            return Some(format!(
                "{} not found (apt-get install containerd runc)",
                bin.display()
            ));
        }
        crate::skip::not_root()
    }

    /// Writes the config and starts containerd, waiting until its CRI plugin
    /// answers Version.
    pub async fn start(options: ContainerdOptions) -> Result<Containerd> {
        let dir = tempfile::Builder::new()
            .prefix("berth-containerd-")
            .tempdir()
            .map_err(Error::io(std::env::temp_dir()))?;
        let d = dir.path();
        let cni_conf = match &options.cni_conf_dir {
            Some(p) => p.clone(),
            None => {
                let p = d.join("cni");
                std::fs::create_dir(&p).map_err(Error::io(&p))?;
                p
            }
        };
        let cni_bin = options
            .cni_bin_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("/usr/lib/cni"));
        let registry = options
            .registry_config_path
            .clone()
            .unwrap_or_else(|| d.join("certs.d"));
        let socket = d.join("containerd.sock");
        let config = render_config(
            d,
            &socket,
            &options.sandbox_image,
            &cni_conf,
            &cni_bin,
            &registry,
        );
        let config_path = d.join("config.toml");
        std::fs::write(&config_path, config).map_err(Error::io(&config_path))?;

        let mut daemon = Daemon::new(DaemonSpec {
            what: "containerd",
            socket,
            log_path: d.join("containerd.log"),
            append_log: false,
            log_lines: 100,
            ready_timeout: READY_TIMEOUT,
            poll: Duration::from_millis(100),
        });
        daemon.spawn(
            Command::new(Self::binary())
                .arg("--config")
                .arg(&config_path),
        )?;
        let mut c = Containerd { daemon, dir };
        c.daemon.wait_ready().await?;
        Ok(c)
    }

    /// CRI clients of this containerd.
    pub async fn client(&self) -> Result<Cri> {
        crate::client::connect(self.daemon.socket()).await
    }

    pub fn socket_path(&self) -> &Path {
        self.daemon.socket()
    }

    /// `unix:///…/containerd.sock`.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.daemon.socket().display())
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// containerd's log so far.
    pub fn log(&self) -> String {
        self.daemon.log()
    }

    /// The daemon's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.daemon.pid()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // The log, when the test panicked, is printed as `daemon` drops.
        let _ = self.daemon.kill();
        // Shims name our socket in their command line; containers mount our root.
        crate::cleanup::kill_and_unmount_under(self.dir.path());
    }
}

fn render_config(
    dir: &Path,
    socket: &Path,
    sandbox_image: &str,
    cni_conf: &Path,
    cni_bin: &Path,
    registry: &Path,
) -> String {
    let d = dir.display();
    format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"
oom_score = 0

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{d}/containerd.sock.ttrpc"

[debug]
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  restrict_oom_score_adj = true

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        Root = "{d}/runc"
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"

  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{registry}"
"#,
        socket = socket.display(),
        cni_bin = cni_bin.display(),
        cni_conf = cni_conf.display(),
        registry = registry.display(),
    )
}

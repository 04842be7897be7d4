//! berthd's configuration: `/etc/berth/config.toml`, then command-line flags on
//! top. Every key has a default so an empty (or missing) file is a valid config;
//! `berthd config default` prints them all. Unknown keys are an error, so a typo
//! in a node's config is caught at start-up instead of being silently ignored.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Default location of the config file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/berth/config.toml";

/// The whole daemon configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// gRPC endpoint, `unix:///path` (a bare path also works).
    pub listen: String,
    /// Persistent state: metadata, content, snapshots, container layers.
    pub root: PathBuf,
    /// Volatile state (lost on reboot, as containers are): sockets, namespace pins, exit files.
    pub state_dir: PathBuf,
    /// Log level filter (`error`, `warn`, `info`, `debug`, `trace` or an env-filter directive).
    pub log_level: String,
    /// Log format: `text` or `json`.
    pub log_format: String,
    /// Cgroup driver reported to kubelet: `cgroupfs` or `systemd`.
    pub cgroup_driver: String,
    /// Path of the `berth-monitor` binary; empty means next to berthd, then $PATH.
    pub monitor_path: String,
    /// Clamp a requested oom_score_adj to berthd's own instead of failing
    /// (for nodes where berthd lacks CAP_SYS_RESOURCE).
    pub restrict_oom_score_adj: bool,
    /// Ignore (with a debug log) hugepage limits when the host's cgroup
    /// hierarchy has no hugetlb controller, as containerd's key of the same
    /// name: a kubelet sends a zero limit per page size on every container.
    /// `false` fails such a CreateContainer instead.
    pub tolerate_missing_hugetlb_controller: bool,
    /// Cgroup parent of containers whose pod names none (cgroupfs path).
    pub cgroup_parent: String,
    /// Mount container writable layers with overlayfs `volatile`: no syncs of
    /// the layer (fsync in the container, the upper filesystem's sync at
    /// unmount). A layer dies with its container, which a host crash ends anyway.
    pub volatile_rootfs: bool,
    /// Registry access: mirrors, plain-HTTP hosts and CAs (containerd's hosts.toml layout).
    pub registry: crate::image::RegistryConfig,
    /// Streaming server for Exec/Attach/PortForward (address, port, token and idle timeouts).
    pub streaming: crate::streaming::StreamingConfig,
    /// Pod networking: CNI config dir, plugin dirs, result cache, plugin timeout.
    pub cni: crate::network::CniConfig,
    /// Prometheus endpoint (`/metrics`, `/healthz`); off unless an address is set.
    pub metrics: crate::metrics::MetricsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "unix:///run/berth/berth.sock".into(),
            root: "/var/lib/berth".into(),
            state_dir: "/run/berth".into(),
            log_level: "info".into(),
            log_format: "text".into(),
            cgroup_driver: "cgroupfs".into(),
            monitor_path: String::new(),
            restrict_oom_score_adj: false,
            tolerate_missing_hugetlb_controller: true,
            cgroup_parent: "/berth".into(),
            volatile_rootfs: true,
            registry: Default::default(),
            streaming: Default::default(),
            cni: Default::default(),
            metrics: Default::default(),
        }
    }
}

impl Config {
    /// Reads `path`; a missing file at the default location yields the defaults,
    /// a missing file the operator named explicitly is an error.
    pub fn load(path: &Path, explicit: bool) -> Result<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                return Ok(Config::default())
            }
            Err(e) => return Err(Error::io("read config", path)(e)),
        };
        let cfg: Config = toml::from_str(&text)
            .map_err(|e| Error::InvalidArgument(format!("config {}: {e}", path.display())))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks values that the type system cannot.
    pub fn validate(&self) -> Result<()> {
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(Error::InvalidArgument(format!(
                "config log_format: {:?} is not one of text, json",
                self.log_format
            )));
        }
        if !matches!(self.cgroup_driver.as_str(), "cgroupfs" | "systemd") {
            return Err(Error::InvalidArgument(format!(
                "config cgroup_driver: {:?} is not one of cgroupfs, systemd",
                self.cgroup_driver
            )));
        }
        socket_path(&self.listen)?;
        self.cni.validate()?;
        self.metrics.validate()?;
        Ok(())
    }

    /// A warning when `state_dir` is so long that container sockets under it
    /// (`<state_dir>/c/<64-hex id>/attach.sock`) would pass the 107-byte unix
    /// socket path limit: creating containers would then fail.
    pub fn state_dir_warning(&self) -> Option<String> {
        let len = self.state_dir.as_os_str().len();
        let longest = len + "/c/".len() + 64 + "/attach.sock".len();
        (longest > 107).then(|| {
            format!(
                "state_dir {:?} is {len} bytes: container sockets under it would exceed the 107-byte unix socket path limit, so containers cannot be created; use at most {} bytes",
                self.state_dir.display(),
                107 - (longest - len)
            )
        })
    }

    /// The default config as TOML, for `berthd config default`.
    pub fn default_toml() -> String {
        toml::to_string_pretty(&Config::default()).expect("default config serialises")
    }

    /// Path of the unix socket from `listen`.
    pub fn socket_path(&self) -> Result<PathBuf> {
        socket_path(&self.listen)
    }
}

/// Turns `unix:///run/x.sock` or `/run/x.sock` into a path; anything else is refused.
pub fn socket_path(endpoint: &str) -> Result<PathBuf> {
    let path = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    if !path.starts_with('/') {
        return Err(Error::InvalidArgument(format!(
            "listen: {endpoint:?} is not a unix socket endpoint (unix:///absolute/path)"
        )));
    }
    Ok(PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_toml_round_trips_and_lists_every_key() {
        let text = Config::default_toml();
        for key in [
            "listen",
            "root",
            "state_dir",
            "log_level",
            "cgroup_driver",
            "tolerate_missing_hugetlb_controller = true",
            "[registry]",
        ] {
            assert!(text.contains(key), "{key} missing from:\n{text}");
        }
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back, Config::default());
    }

    #[test]
    fn unknown_key_and_bad_values_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "lissten = \"x\"\n").unwrap();
        assert!(Config::load(&p, true)
            .unwrap_err()
            .to_string()
            .contains("lissten"));
        std::fs::write(&p, "log_format = \"xml\"\n").unwrap();
        assert!(Config::load(&p, true)
            .unwrap_err()
            .to_string()
            .contains("log_format"));
        std::fs::write(&p, "listen = \"tcp://1.2.3.4:5\"\n").unwrap();
        assert!(Config::load(&p, true)
            .unwrap_err()
            .to_string()
            .contains("listen"));
    }

    #[test]
    fn metrics_address_must_be_host_port() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[metrics]\naddress = \"127.0.0.1:9898\"\n").unwrap();
        assert_eq!(
            Config::load(&p, true).unwrap().metrics.address,
            "127.0.0.1:9898"
        );
        std::fs::write(&p, "[metrics]\naddress = \"localhost\"\n").unwrap();
        let e = Config::load(&p, true).unwrap_err().to_string();
        assert!(e.contains("metrics.address"), "{e}");
        assert_eq!(Config::default().metrics.address, "", "off by default");
    }

    #[test]
    fn missing_default_file_is_defaults_but_missing_explicit_file_is_an_error() {
        let p = Path::new("/nonexistent/berth.toml");
        assert_eq!(Config::load(p, false).unwrap(), Config::default());
        Config::load(p, true).unwrap_err();
    }

    #[test]
    fn a_state_dir_too_long_for_container_sockets_is_flagged() {
        let mut c = Config::default();
        assert_eq!(c.state_dir_warning(), None);
        c.state_dir = format!("/tmp/{}", "x".repeat(40)).into();
        assert!(c.state_dir_warning().unwrap().contains("at most 28 bytes"));
    }

    #[test]
    fn socket_path_accepts_unix_urls_and_paths() {
        assert_eq!(
            socket_path("unix:///run/a.sock").unwrap(),
            PathBuf::from("/run/a.sock")
        );
        assert_eq!(
            socket_path("/run/a.sock").unwrap(),
            PathBuf::from("/run/a.sock")
        );
        socket_path("unix://relative").unwrap_err();
    }
}

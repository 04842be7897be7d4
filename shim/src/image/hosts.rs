//! Registry host configuration in containerd's `hosts.toml` format.
//!
//! For registry `R`, the first of `<config_path>/R_port_/hosts.toml` (for
//! `host:port`, containerd's escaped form), `<config_path>/R/hosts.toml` and
//! `<config_path>/_default/hosts.toml` that exists is read. Its `[host."URL"]`
//! tables are mirrors tried in file order, then `server` (default: the
//! registry itself, `registry-1.docker.io` for `docker.io`). Without any file a
//! registry is reached over HTTPS, except loopback hosts, which are plain HTTP
//! as a local development registry is.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use reqwest::Url;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Error, Result};

use super::reference::DOCKER_HUB;

/// The `[registry]` section of `/etc/berth/config.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// Directory of per-registry `hosts.toml` files (containerd's `config_path`).
    pub config_path: PathBuf,
    /// How many layers are downloaded and unpacked at once across all pulls.
    pub max_concurrent_downloads: usize,
    /// Largest uncompressed size of one layer, in bytes (0: no limit). A
    /// pull with a larger layer is refused as it streams, before the node's
    /// disk fills: a few MiB of gzip can inflate to TBs.
    pub max_unpacked_layer_size: u64,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            config_path: PathBuf::from("/etc/berth/certs.d"),
            max_concurrent_downloads: 3,
            max_unpacked_layer_size: 64 << 30,
        }
    }
}

/// One place a registry's content can be fetched from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// API root, e.g. `https://registry-1.docker.io/v2`; request paths are appended.
    pub api_root: String,
    /// May resolve tags to manifests.
    pub resolve: bool,
    /// May serve blobs and manifests by digest.
    pub pull: bool,
    /// Accept any TLS certificate.
    pub skip_verify: bool,
    /// Extra CA certificates (PEM files) to trust.
    pub ca: Vec<PathBuf>,
    /// Extra headers sent with every request.
    pub headers: Vec<(String, String)>,
    /// `Some(registry)` for a mirror: requests carry `?ns=<registry>`.
    pub mirror_of: Option<String>,
}

impl Endpoint {
    /// The endpoint's host (for credential and token scoping).
    pub fn host(&self) -> String {
        Url::parse(&self.api_root)
            .ok()
            .and_then(|u| {
                u.host_str().map(|h| match u.port() {
                    Some(p) => format!("{h}:{p}"),
                    None => h.to_string(),
                })
            })
            .unwrap_or_default()
    }

    /// Full URL for `path` below the API root (`path` starts with `/`).
    pub fn url(&self, path: &str) -> String {
        match &self.mirror_of {
            Some(ns) => format!("{}{path}?ns={ns}", self.api_root),
            None => format!("{}{path}", self.api_root),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostsFile {
    server: Option<String>,
    capabilities: Option<Vec<String>>,
    skip_verify: Option<bool>,
    ca: Option<OneOrMany>,
    override_path: Option<bool>,
    header: Option<BTreeMap<String, OneOrMany>>,
    #[serde(default)]
    host: Ordered<HostSettings>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostSettings {
    capabilities: Option<Vec<String>>,
    skip_verify: Option<bool>,
    ca: Option<OneOrMany>,
    override_path: Option<bool>,
    header: Option<BTreeMap<String, OneOrMany>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// A TOML table kept in document order: mirrors are tried in the order written.
#[derive(Debug)]
struct Ordered<T>(Vec<(String, T)>);

impl<T> Default for Ordered<T> {
    fn default() -> Self {
        Ordered(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Ordered<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Ordered<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of hosts")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, T>()? {
                    out.push((k, v));
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// containerd's directory name for a `host:port` registry: `host_port_`.
fn escaped_dir(registry: &str) -> Option<String> {
    let (h, p) = registry.rsplit_once(':')?;
    if p.bytes().all(|b| b.is_ascii_digit()) && !p.is_empty() {
        Some(format!("{h}_{p}_"))
    } else {
        None
    }
}

fn is_loopback(registry: &str) -> bool {
    let host = match registry.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => registry,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The upstream server of `registry` when no file names one.
fn default_server(registry: &str) -> String {
    if registry == DOCKER_HUB {
        "https://registry-1.docker.io".to_string()
    } else if is_loopback(registry) {
        format!("http://{registry}")
    } else {
        format!("https://{registry}")
    }
}

/// The endpoints to try for `registry`, in order.
pub fn endpoints(config_path: &Path, registry: &str) -> Result<Vec<Endpoint>> {
    let mut dirs = Vec::new();
    if let Some(e) = escaped_dir(registry) {
        dirs.push(config_path.join(e));
    }
    dirs.push(config_path.join(registry));
    dirs.push(config_path.join("_default"));
    for dir in dirs {
        let file = dir.join("hosts.toml");
        match std::fs::read_to_string(&file) {
            Ok(text) => return parse_hosts(&text, &dir, registry),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("read registry hosts file", file)(e)),
        }
    }
    let server = default_server(registry);
    endpoint(&server, HostSettings::default(), Path::new("/"), None)
        .map(|e| vec![e])
        .map_err(|e| Error::InvalidArgument(format!("registry {registry}: {e}")))
}

fn parse_hosts(text: &str, dir: &Path, registry: &str) -> Result<Vec<Endpoint>> {
    let file = dir.join("hosts.toml");
    let bad = |e: String| Error::InvalidArgument(format!("{}: {e}", file.display()));
    let parsed: HostsFile = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::new();
    for (url, settings) in parsed.host.0 {
        out.push(endpoint(&url, settings, dir, Some(registry.to_string())).map_err(bad)?);
    }
    let server = parsed.server.unwrap_or_else(|| default_server(registry));
    let settings = HostSettings {
        capabilities: parsed.capabilities,
        skip_verify: parsed.skip_verify,
        ca: parsed.ca,
        override_path: parsed.override_path,
        header: parsed.header,
    };
    out.push(endpoint(&server, settings, dir, None).map_err(bad)?);
    Ok(out)
}

fn endpoint(
    url: &str,
    s: HostSettings,
    dir: &Path,
    mirror_of: Option<String>,
) -> std::result::Result<Endpoint, String> {
    let with_scheme = if url.contains("://") {
        url.to_string()
    } else {
        format!("https://{url}")
    };
    let u = Url::parse(&with_scheme).map_err(|e| format!("host {url:?}: {e}"))?;
    if u.scheme() != "http" && u.scheme() != "https" {
        return Err(format!("host {url:?}: scheme must be http or https"));
    }
    let host = u
        .host_str()
        .ok_or_else(|| format!("host {url:?}: no host"))?;
    let authority = match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    let mut path = u.path().trim_end_matches('/').to_string();
    if !s.override_path.unwrap_or(false) && !path.ends_with("/v2") {
        path.push_str("/v2");
    }
    let caps = s
        .capabilities
        .unwrap_or_else(|| vec!["pull".into(), "resolve".into(), "push".into()]);
    for c in &caps {
        if !matches!(c.as_str(), "pull" | "resolve" | "push") {
            return Err(format!("host {url:?}: unknown capability {c:?}"));
        }
    }
    let ca =
        s.ca.map(OneOrMany::into_vec)
            .unwrap_or_default()
            .into_iter()
            .map(|p| dir.join(p))
            .collect();
    let headers = s
        .header
        .unwrap_or_default()
        .into_iter()
        .flat_map(|(k, v)| v.into_vec().into_iter().map(move |v| (k.clone(), v)))
        .collect();
    Ok(Endpoint {
        api_root: format!("{}://{authority}{path}", u.scheme()),
        resolve: caps.iter().any(|c| c == "resolve"),
        pull: caps.iter().any(|c| c == "pull"),
        skip_verify: s.skip_verify.unwrap_or(false),
        ca,
        headers,
        mirror_of,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, sub: &str, text: &str) {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        std::fs::write(dir.join(sub).join("hosts.toml"), text).unwrap();
    }

    #[test]
    fn defaults_without_files() {
        let d = tempfile::tempdir().unwrap();
        let e = endpoints(d.path(), "docker.io").unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].api_root, "https://registry-1.docker.io/v2");
        assert!(e[0].pull && e[0].resolve && e[0].mirror_of.is_none());
        assert_eq!(
            endpoints(d.path(), "quay.io").unwrap()[0].api_root,
            "https://quay.io/v2"
        );
        assert_eq!(
            endpoints(d.path(), "127.0.0.1:5000").unwrap()[0].api_root,
            "http://127.0.0.1:5000/v2"
        );
        assert_eq!(
            endpoints(d.path(), "localhost:5000").unwrap()[0].url("/a/manifests/b"),
            "http://localhost:5000/v2/a/manifests/b"
        );
    }

    #[test]
    fn mirror_in_file_order_then_server() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "registry.k8s.io",
            r#"
server = "https://registry.k8s.io"
[host."http://127.0.0.1:5000"]
  capabilities = ["pull", "resolve"]
[host."https://a-mirror.example/base"]
  capabilities = ["pull"]
  skip_verify = true
  ca = ["ca1.pem", "/abs/ca2.pem"]
  header = { X-Test = "1" }
[host."https://b.example/raw/api"]
  override_path = true
  ca = "one.pem"
"#,
        );
        let e = endpoints(d.path(), "registry.k8s.io").unwrap();
        let roots: Vec<_> = e.iter().map(|e| e.api_root.as_str()).collect();
        assert_eq!(
            roots,
            [
                "http://127.0.0.1:5000/v2",
                "https://a-mirror.example/base/v2",
                "https://b.example/raw/api",
                "https://registry.k8s.io/v2"
            ]
        );
        assert_eq!(
            e[0].url("/pause/manifests/3.10"),
            "http://127.0.0.1:5000/v2/pause/manifests/3.10?ns=registry.k8s.io"
        );
        assert!(e[0].pull && e[0].resolve);
        assert!(e[1].pull && !e[1].resolve && e[1].skip_verify);
        assert_eq!(
            e[1].ca,
            [
                d.path().join("registry.k8s.io/ca1.pem"),
                PathBuf::from("/abs/ca2.pem")
            ]
        );
        assert_eq!(e[1].headers, [("X-Test".to_string(), "1".to_string())]);
        assert_eq!(e[2].ca, [d.path().join("registry.k8s.io/one.pem")]);
        assert!(e[3].mirror_of.is_none());
        assert_eq!(e[3].url("/x"), "https://registry.k8s.io/v2/x");
    }

    #[test]
    fn port_directory_and_default_fallback() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "_default",
            "[host.\"http://mirror.local:8080\"]\n",
        );
        write(
            d.path(),
            "reg.example:5443",
            "server = \"https://reg.example:5443\"\nskip_verify = true\n",
        );
        let e = endpoints(d.path(), "reg.example:5443").unwrap();
        assert_eq!(e.len(), 1);
        assert!(e[0].skip_verify);
        // containerd's escaped `host_port_` directory wins over `host:port`.
        write(
            d.path(),
            "reg.example_5443_",
            "server = \"https://other:1\"\n",
        );
        assert_eq!(
            endpoints(d.path(), "reg.example:5443").unwrap()[0].api_root,
            "https://other:1/v2"
        );
        // Any other registry falls back to _default: its mirror, then itself.
        let e = endpoints(d.path(), "ghcr.io").unwrap();
        let roots: Vec<_> = e.iter().map(|e| e.api_root.as_str()).collect();
        assert_eq!(roots, ["http://mirror.local:8080/v2", "https://ghcr.io/v2"]);
        assert_eq!(e[0].mirror_of.as_deref(), Some("ghcr.io"));
    }

    #[test]
    fn bad_files_are_reported_with_path() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "x.io",
            "[host.\"https://m\"]\ncapabilities = [\"fly\"]\n",
        );
        let err = endpoints(d.path(), "x.io").unwrap_err().to_string();
        assert!(err.contains("hosts.toml") && err.contains("fly"), "{err}");
        write(d.path(), "y.io", "servr = \"https://y\"\n");
        let err = endpoints(d.path(), "y.io").unwrap_err().to_string();
        assert!(err.contains("servr"), "{err}");
        write(d.path(), "z.io", "server = \"ftp://z\"\n");
        endpoints(d.path(), "z.io").unwrap_err();
    }

    #[test]
    fn registry_config_defaults_and_toml() {
        let c: RegistryConfig = toml::from_str("").unwrap();
        assert_eq!(c, RegistryConfig::default());
        assert_eq!(c.config_path, PathBuf::from("/etc/berth/certs.d"));
        let c: RegistryConfig = toml::from_str("config_path = \"/x\"").unwrap();
        assert_eq!(c.config_path, PathBuf::from("/x"));
        toml::from_str::<RegistryConfig>("nope = 1").unwrap_err();
    }
}

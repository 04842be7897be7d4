//! The data the network module takes from and gives back to the pod lifecycle.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The `[cni]` section of berthd's config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct CniConfig {
    /// Where network configs (`*.conflist`, `*.conf`, `*.json`) are read from.
    pub conf_dir: PathBuf,
    /// Where plugin binaries are looked up, in order; also passed as `CNI_PATH`.
    pub bin_dirs: Vec<PathBuf>,
    /// Where ADD results are cached so DEL and CHECK get `prevResult` after a
    /// restart; a relative path is under berthd's `root` (see [`CniConfig::resolved`]).
    pub cache_dir: PathBuf,
    /// Upper bound for one plugin run; the plugin is killed when it runs out.
    pub plugin_timeout_secs: u64,
}

impl Default for CniConfig {
    fn default() -> Self {
        CniConfig {
            conf_dir: "/etc/cni/net.d".into(),
            bin_dirs: vec!["/opt/cni/bin".into(), "/usr/lib/cni".into()],
            cache_dir: "cni".into(),
            plugin_timeout_secs: 30,
        }
    }
}

impl CniConfig {
    /// This config with a relative `cache_dir` placed under `root` (berthd's
    /// persistent state dir), so a daemon with another root keeps its own cache.
    pub fn resolved(&self, root: &Path) -> CniConfig {
        let mut cfg = self.clone();
        if cfg.cache_dir.is_relative() {
            cfg.cache_dir = root.join(&cfg.cache_dir);
        }
        cfg
    }

    /// Checks what the types cannot; names the `cni.*` key at fault.
    pub fn validate(&self) -> Result<()> {
        if self.bin_dirs.is_empty() {
            return Err(Error::InvalidArgument(
                "config cni.bin_dirs: at least one plugin dir is needed".into(),
            ));
        }
        if self.plugin_timeout_secs == 0 {
            return Err(Error::InvalidArgument(
                "config cni.plugin_timeout_secs: must be at least 1".into(),
            ));
        }
        if self.cache_dir.as_os_str().is_empty() {
            return Err(Error::InvalidArgument(
                "config cni.cache_dir: must not be empty".into(),
            ));
        }
        Ok(())
    }
}

/// Whether pods can get a network, in the shape of the CRI `NetworkReady` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkStatus {
    /// True once a usable network config exists.
    pub ready: bool,
    /// `NetworkPluginNotReady` while not ready, empty when ready.
    pub reason: String,
    /// What is missing (names the config dir), or the config in use when ready.
    pub message: String,
}

/// One pod's request for a network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodNetwork {
    /// The sandbox id; becomes `CNI_CONTAINERID` and `K8S_POD_INFRA_CONTAINER_ID`.
    pub pod_id: String,
    /// The pinned network namespace (bind mount), e.g. `/run/berth/ns/<pod>/net`.
    pub netns: PathBuf,
    /// Pod name (`K8S_POD_NAME`).
    pub name: String,
    /// Pod namespace (`K8S_POD_NAMESPACE`).
    pub namespace: String,
    /// Pod uid (`K8S_POD_UID`).
    pub uid: String,
    /// hostPort mappings, offered as the `portMappings` capability.
    pub port_mappings: Vec<PortMapping>,
    /// Traffic shaping, offered as the `bandwidth` capability.
    pub bandwidth: Option<Bandwidth>,
    /// The pod's DNS config, offered as the `dns` capability.
    pub dns: Option<DnsSettings>,
}

/// A hostPort mapping from the CRI `PortMapping`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// Port inside the pod.
    pub container_port: i32,
    /// Port on the node; mappings with 0 are not forwarded (as in kubelet).
    pub host_port: i32,
    /// `tcp`, `udp` or `sctp` (any case; empty means tcp).
    pub protocol: String,
    /// Node address to bind; empty means all.
    pub host_ip: String,
}

/// Rates in bits per second and bursts in bits, as the `bandwidth` plugin takes them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bandwidth {
    /// Ingress rate, bit/s (0 = unlimited).
    pub ingress_rate: u64,
    /// Ingress burst, bits.
    pub ingress_burst: u64,
    /// Egress rate, bit/s (0 = unlimited).
    pub egress_rate: u64,
    /// Egress burst, bits.
    pub egress_burst: u64,
}

/// The pod annotation kubelet uses for the ingress limit.
pub const INGRESS_BANDWIDTH_ANNOTATION: &str = "kubernetes.io/ingress-bandwidth";
/// The pod annotation kubelet uses for the egress limit.
pub const EGRESS_BANDWIDTH_ANNOTATION: &str = "kubernetes.io/egress-bandwidth";

impl Bandwidth {
    /// Reads the `kubernetes.io/{ingress,egress}-bandwidth` annotations (Kubernetes
    /// quantities such as `10M`); `None` when neither is set. Bursts are the
    /// largest the kernel takes, as other runtimes set them.
    pub fn from_annotations<'a>(
        annotations: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Result<Option<Bandwidth>> {
        let mut bw = Bandwidth::default();
        let mut any = false;
        for (k, v) in annotations {
            let rate = match k.as_str() {
                INGRESS_BANDWIDTH_ANNOTATION => &mut bw.ingress_rate,
                EGRESS_BANDWIDTH_ANNOTATION => &mut bw.egress_rate,
                _ => continue,
            };
            let value = parse_quantity(v).ok_or_else(|| {
                Error::InvalidArgument(format!("annotation {k}: {v:?} is not a quantity"))
            })?;
            // kubelet refuses limits outside 1k..1P; so do we.
            if !(1_000..=1_000_000_000_000_000).contains(&value) {
                return Err(Error::InvalidArgument(format!(
                    "annotation {k}: {v:?} is outside 1k..1P"
                )));
            }
            *rate = value;
            any = true;
        }
        if !any {
            return Ok(None);
        }
        if bw.ingress_rate > 0 {
            bw.ingress_burst = u32::MAX as u64;
        }
        if bw.egress_rate > 0 {
            bw.egress_burst = u32::MAX as u64;
        }
        Ok(Some(bw))
    }
}

/// Parses a Kubernetes resource quantity (`100`, `1.5M`, `10Mi`, `1G`) into an
/// integer, rounding up as Kubernetes does; `None` if malformed or too big.
fn parse_quantity(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let multiplier: u128 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        _ => return None,
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() && frac.is_empty() || frac.contains('.') || frac.len() > 18 {
        return None;
    }
    let int: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let frac_value: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    let scale = 10u128.pow(u32::try_from(frac.len()).unwrap_or(u32::MAX));
    let whole = int.checked_mul(multiplier)?;
    let part = (frac_value * multiplier).div_ceil(scale);
    u64::try_from(whole.checked_add(part)?).ok()
}

/// The pod's resolver settings (CRI `DNSConfig`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsSettings {
    /// Name server addresses.
    pub servers: Vec<String>,
    /// Search domains.
    pub searches: Vec<String>,
    /// resolv.conf options (`ndots:5`).
    pub options: Vec<String>,
}

impl DnsSettings {
    /// True when nothing is set, so the host's resolv.conf applies.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty() && self.searches.is_empty() && self.options.is_empty()
    }
}

/// The pod's addresses as CNI reported them: IPv4 first when there is one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodIps {
    /// The primary address (CRI `PodSandboxNetworkStatus.ip`).
    pub ip: String,
    /// The others, e.g. the IPv6 address of a dual-stack pod.
    pub additional_ips: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn cni_config_from_toml() {
        let cfg: CniConfig = toml::from_str("conf_dir = \"/etc/x\"\n").unwrap();
        assert_eq!(cfg.conf_dir, PathBuf::from("/etc/x"));
        assert_eq!(cfg.plugin_timeout_secs, 30);
        toml::from_str::<CniConfig>("conf_dirr = \"/x\"\n").unwrap_err();
        let r = cfg.resolved(Path::new("/var/lib/berth"));
        assert_eq!(r.cache_dir, PathBuf::from("/var/lib/berth/cni"));
        let abs = CniConfig {
            cache_dir: "/srv/cni".into(),
            ..Default::default()
        };
        assert_eq!(
            abs.resolved(Path::new("/r")).cache_dir,
            PathBuf::from("/srv/cni")
        );
        cfg.validate().unwrap();
        let bad = CniConfig {
            plugin_timeout_secs: 0,
            ..Default::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("plugin_timeout_secs"));
        let bad = CniConfig {
            bin_dirs: vec![],
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("bin_dirs"));
    }

    #[test]
    fn quantities_parse_like_kubernetes() {
        assert_eq!(parse_quantity("100"), Some(100));
        assert_eq!(parse_quantity("10M"), Some(10_000_000));
        assert_eq!(parse_quantity("1.5k"), Some(1_500));
        assert_eq!(parse_quantity("1Mi"), Some(1_048_576));
        assert_eq!(parse_quantity("0.0001k"), Some(1));
        for bad in [
            "",
            "M",
            "1.2.3",
            "10X",
            "-1",
            "1e3",
            "99999999999999999999999E",
        ] {
            assert_eq!(parse_quantity(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn bandwidth_from_annotations() {
        let mut a = HashMap::new();
        a.insert("other".to_string(), "x".to_string());
        assert_eq!(Bandwidth::from_annotations(&a).unwrap(), None);
        a.insert(INGRESS_BANDWIDTH_ANNOTATION.to_string(), "10M".to_string());
        let bw = Bandwidth::from_annotations(&a).unwrap().unwrap();
        assert_eq!(bw.ingress_rate, 10_000_000);
        assert_eq!(bw.ingress_burst, u32::MAX as u64);
        assert_eq!((bw.egress_rate, bw.egress_burst), (0, 0));
        a.insert(EGRESS_BANDWIDTH_ANNOTATION.to_string(), "10".to_string());
        let err = Bandwidth::from_annotations(&a).unwrap_err().to_string();
        assert!(err.contains("egress-bandwidth"), "{err}");
        a.insert(EGRESS_BANDWIDTH_ANNOTATION.to_string(), "ten".to_string());
        Bandwidth::from_annotations(&a).unwrap_err();
    }
}

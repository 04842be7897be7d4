//! Reading what plugins print: the ADD result (1.0/0.4 and 0.3 shapes) and the
//! error object a failing plugin writes to stdout.

use std::net::IpAddr;

use serde::Deserialize;
use serde_json::Value;

use super::types::PodIps;

#[derive(Debug, Deserialize)]
struct RawResult {
    #[serde(default)]
    interfaces: Vec<RawInterface>,
    #[serde(default)]
    ips: Vec<RawIp>,
}

#[derive(Debug, Deserialize)]
struct RawInterface {
    #[serde(default)]
    sandbox: String,
}

#[derive(Debug, Deserialize)]
struct RawIp {
    /// Only in 0.3.x/0.4.0 results ("4" or "6"); 1.0 derives it from the address.
    #[serde(default)]
    version: Option<String>,
    address: String,
    #[serde(default)]
    interface: Option<usize>,
}

/// Pulls the pod's addresses out of an ADD result. Addresses bound to a host-side
/// interface (one without `sandbox`) are not the pod's; IPv4 comes first so a
/// dual-stack pod reports its v4 address as primary, as other runtimes do.
pub fn pod_ips(result: &Value) -> Result<PodIps, String> {
    let raw: RawResult = serde_json::from_value(result.clone())
        .map_err(|e| format!("cni result is malformed: {e}"))?;
    let mut ips: Vec<IpAddr> = Vec::new();
    for ip in &raw.ips {
        if let Some(i) = ip.interface {
            if raw
                .interfaces
                .get(i)
                .is_some_and(|itf| itf.sandbox.is_empty())
            {
                continue;
            }
        }
        let addr = ip.address.split('/').next().unwrap_or_default();
        let parsed: IpAddr = addr
            .parse()
            .map_err(|_| format!("cni result: ip address {:?} is not an address", ip.address))?;
        if let Some(v) = &ip.version {
            let want = if parsed.is_ipv4() { "4" } else { "6" };
            if v != want {
                return Err(format!(
                    "cni result: ip {} is marked version {v}",
                    ip.address
                ));
            }
        }
        if !ips.contains(&parsed) {
            ips.push(parsed);
        }
    }
    // Stable: keeps the plugin's order within each family.
    ips.sort_by_key(|ip| ip.is_ipv6());
    let mut it = ips.into_iter().map(|ip| ip.to_string());
    let ip = it
        .next()
        .ok_or_else(|| "cni result has no ip address for the pod".to_string())?;
    Ok(PodIps {
        ip,
        additional_ips: it.collect(),
    })
}

/// The error object of the CNI spec; every field optional because plugins vary.
#[derive(Debug, Default, Deserialize)]
pub struct PluginError {
    /// Error code (1-99 spec-defined, 100+ plugin-defined).
    #[serde(default)]
    pub code: Option<u64>,
    /// Short message.
    #[serde(default)]
    pub msg: String,
    /// Longer explanation.
    #[serde(default)]
    pub details: String,
}

impl PluginError {
    /// Parses a plugin's stdout as a CNI error, `None` if it isn't one.
    pub fn parse(stdout: &[u8]) -> Option<PluginError> {
        let e: PluginError = serde_json::from_slice(stdout).ok()?;
        (e.code.is_some() || !e.msg.is_empty()).then_some(e)
    }
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(code) = self.code {
            write!(f, "code {code}: ")?;
        }
        f.write_str(&self.msg)?;
        if !self.details.is_empty() {
            write!(f, " ({})", self.details)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn v1_result_from_bridge() {
        let r = json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "cni0", "mac": "aa:bb:cc:dd:ee:01"},
                {"name": "veth1", "mac": "aa:bb:cc:dd:ee:02"},
                {"name": "eth0", "mac": "aa:bb:cc:dd:ee:03", "sandbox": "/run/netns/x"}
            ],
            "ips": [
                {"address": "10.22.0.1/16", "interface": 0},
                {"address": "fd00::5/64", "gateway": "fd00::1", "interface": 2},
                {"address": "10.22.0.5/16", "gateway": "10.22.0.1", "interface": 2}
            ],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {}
        });
        let ips = pod_ips(&r).unwrap();
        assert_eq!(ips.ip, "10.22.0.5");
        assert_eq!(ips.additional_ips, vec!["fd00::5".to_string()]);
    }

    #[test]
    fn v03_result_with_version_fields() {
        let r = json!({
            "cniVersion": "0.3.1",
            "ips": [{"version": "4", "address": "192.168.1.7/24", "gateway": "192.168.1.1"}]
        });
        assert_eq!(pod_ips(&r).unwrap().ip, "192.168.1.7");
        let wrong = json!({"ips": [{"version": "6", "address": "192.168.1.7/24"}]});
        assert!(pod_ips(&wrong).unwrap_err().contains("version 6"));
    }

    #[test]
    fn results_without_pod_ips_are_errors() {
        assert!(pod_ips(&json!({"cniVersion": "1.0.0"}))
            .unwrap_err()
            .contains("no ip"));
        assert!(pod_ips(&json!({"ips": [{"address": "nonsense"}]}))
            .unwrap_err()
            .contains("nonsense"));
        assert!(pod_ips(&json!({"ips": "x"}))
            .unwrap_err()
            .contains("malformed"));
    }

    #[test]
    fn plugin_errors_are_recognised() {
        let e = PluginError::parse(
            br#"{"cniVersion":"1.0.0","code":7,"msg":"bad conf","details":"no bridge"}"#,
        )
        .unwrap();
        assert_eq!(e.to_string(), "code 7: bad conf (no bridge)");
        assert!(PluginError::parse(b"garbage").is_none());
        assert!(PluginError::parse(b"{}").is_none());
    }
}

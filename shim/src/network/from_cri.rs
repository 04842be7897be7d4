//! Conversions between the CRI messages the pod lifecycle receives and the
//! network module's own types, so the mapping (protocol enum, bandwidth
//! annotations, host-network mode) lives next to the code that relies on it.

use std::path::Path;

use berth_proto::v1;

use super::types::{Bandwidth, DnsSettings, PodIps, PodNetwork, PortMapping};
use crate::error::{Error, Result};

impl PodNetwork {
    /// The CNI request for pod `pod_id` whose network namespace is pinned at
    /// `netns`, from its RunPodSandbox config.
    pub fn from_cri(
        pod_id: &str,
        netns: &Path,
        config: &v1::PodSandboxConfig,
    ) -> Result<PodNetwork> {
        let meta = config.metadata.clone().unwrap_or_default();
        let mut port_mappings = Vec::with_capacity(config.port_mappings.len());
        for (i, pm) in config.port_mappings.iter().enumerate() {
            let protocol = match v1::Protocol::try_from(pm.protocol) {
                Ok(v1::Protocol::Tcp) => "tcp",
                Ok(v1::Protocol::Udp) => "udp",
                Ok(v1::Protocol::Sctp) => "sctp",
                Err(_) => {
                    return Err(Error::InvalidArgument(format!(
                        "config.port_mappings[{i}].protocol: unknown value {}",
                        pm.protocol
                    )))
                }
            };
            port_mappings.push(PortMapping {
                container_port: pm.container_port,
                host_port: pm.host_port,
                protocol: protocol.into(),
                host_ip: pm.host_ip.clone(),
            });
        }
        Ok(PodNetwork {
            pod_id: pod_id.into(),
            netns: netns.into(),
            name: meta.name,
            namespace: meta.namespace,
            uid: meta.uid,
            port_mappings,
            bandwidth: Bandwidth::from_annotations(&config.annotations)?,
            dns: config.dns_config.as_ref().map(DnsSettings::from_cri),
        })
    }
}

/// Longest pod name, namespace or uid passed to plugins (in `CNI_ARGS`).
const ARG_MAX: usize = 253;

impl PodNetwork {
    /// The CNI DEL request for a pod, built from whatever config it was stored
    /// with and never failing on it: a pod that exists must always be
    /// removable. Parts [`PodNetwork::from_cri`] would refuse (an unknown
    /// protocol, bad bandwidth annotations, a name that cannot go into
    /// `CNI_ARGS`) were never given to a plugin, so leaving them out of the
    /// DEL loses nothing.
    pub fn for_teardown(pod_id: &str, netns: &Path, config: &v1::PodSandboxConfig) -> PodNetwork {
        let meta = config.metadata.clone().unwrap_or_default();
        let arg = |s: String| {
            if s.len() > ARG_MAX || s.contains([';', '=', '\0']) {
                String::new()
            } else {
                s
            }
        };
        let port_mappings = config
            .port_mappings
            .iter()
            .filter_map(|pm| {
                let protocol = match v1::Protocol::try_from(pm.protocol).ok()? {
                    v1::Protocol::Tcp => "tcp",
                    v1::Protocol::Udp => "udp",
                    v1::Protocol::Sctp => "sctp",
                };
                Some(PortMapping {
                    container_port: pm.container_port,
                    host_port: pm.host_port,
                    protocol: protocol.into(),
                    host_ip: pm.host_ip.clone(),
                })
            })
            .collect();
        PodNetwork {
            pod_id: pod_id.into(),
            netns: netns.into(),
            name: arg(meta.name),
            namespace: arg(meta.namespace),
            uid: arg(meta.uid),
            port_mappings,
            bandwidth: Bandwidth::from_annotations(&config.annotations).unwrap_or_default(),
            dns: config.dns_config.as_ref().map(DnsSettings::from_cri),
        }
    }
}

impl DnsSettings {
    /// From the CRI `DNSConfig`.
    pub fn from_cri(dns: &v1::DnsConfig) -> DnsSettings {
        DnsSettings {
            servers: dns.servers.clone(),
            searches: dns.searches.clone(),
            options: dns.options.clone(),
        }
    }
}

impl PodIps {
    /// The CRI `PodSandboxNetworkStatus` for PodSandboxStatus.
    pub fn to_cri(&self) -> v1::PodSandboxNetworkStatus {
        v1::PodSandboxNetworkStatus {
            ip: self.ip.clone(),
            additional_ips: self
                .additional_ips
                .iter()
                .map(|ip| v1::PodIp { ip: ip.clone() })
                .collect(),
        }
    }
}

/// True when the pod uses the node's network namespace (no CNI, the node's
/// hosts and resolv.conf).
pub fn is_host_network(config: &v1::PodSandboxConfig) -> bool {
    config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref())
        .is_some_and(|n| n.network == v1::NamespaceMode::Node as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> v1::PodSandboxConfig {
        v1::PodSandboxConfig {
            metadata: Some(v1::PodSandboxMetadata {
                name: "web-0".into(),
                uid: "u1".into(),
                namespace: "prod".into(),
                attempt: 0,
            }),
            port_mappings: vec![v1::PortMapping {
                protocol: v1::Protocol::Udp as i32,
                container_port: 53,
                host_port: 5353,
                host_ip: "127.0.0.1".into(),
            }],
            dns_config: Some(v1::DnsConfig {
                servers: vec!["10.96.0.10".into()],
                searches: vec!["svc.cluster.local".into()],
                options: vec!["ndots:5".into()],
            }),
            annotations: [(
                "kubernetes.io/egress-bandwidth".to_string(),
                "1M".to_string(),
            )]
            .into(),
            ..Default::default()
        }
    }

    #[test]
    fn pod_network_from_a_sandbox_config() {
        let p = PodNetwork::from_cri("abc", Path::new("/run/berth/ns/abc/net"), &config()).unwrap();
        assert_eq!(
            (p.name.as_str(), p.namespace.as_str(), p.uid.as_str()),
            ("web-0", "prod", "u1")
        );
        assert_eq!(p.netns, Path::new("/run/berth/ns/abc/net"));
        assert_eq!(
            p.port_mappings,
            vec![PortMapping {
                container_port: 53,
                host_port: 5353,
                protocol: "udp".into(),
                host_ip: "127.0.0.1".into()
            }]
        );
        assert_eq!(p.bandwidth.unwrap().egress_rate, 1_000_000);
        assert_eq!(p.dns.unwrap().options, vec!["ndots:5".to_string()]);

        let mut bad = config();
        bad.port_mappings[0].protocol = 9;
        let e = PodNetwork::from_cri("abc", Path::new("/x"), &bad).unwrap_err();
        assert!(e.to_string().contains("port_mappings[0].protocol"), "{e}");
    }

    #[test]
    fn host_network_and_status_conversion() {
        let mut c = config();
        assert!(!is_host_network(&c));
        c.linux = Some(v1::LinuxPodSandboxConfig {
            security_context: Some(v1::LinuxSandboxSecurityContext {
                namespace_options: Some(v1::NamespaceOption {
                    network: v1::NamespaceMode::Node as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!(is_host_network(&c));
        let s = PodIps {
            ip: "10.0.0.2".into(),
            additional_ips: vec!["fd00::2".into()],
        }
        .to_cri();
        assert_eq!(s.ip, "10.0.0.2");
        assert_eq!(s.additional_ips[0].ip, "fd00::2");
    }

    #[test]
    fn teardown_request_never_refuses_a_stored_config() {
        // The two configs that used to wedge a pod: an unknown protocol and a
        // name too long for CNI_ARGS.
        let mut c = config();
        c.port_mappings.push(v1::PortMapping {
            protocol: 99,
            container_port: 80,
            ..Default::default()
        });
        c.metadata.as_mut().unwrap().name = "p".repeat(1 << 20);
        c.annotations
            .insert("kubernetes.io/ingress-bandwidth".into(), "lots".into());
        PodNetwork::from_cri("abc", Path::new("/n"), &c).unwrap_err();
        let pn = PodNetwork::for_teardown("abc", Path::new("/n"), &c);
        assert_eq!(pn.pod_id, "abc");
        assert_eq!(pn.name, "", "left out of CNI_ARGS");
        assert_eq!(pn.namespace, "prod");
        assert_eq!(pn.port_mappings.len(), 1, "the udp mapping stays");
        assert_eq!(pn.bandwidth, None);
    }
}

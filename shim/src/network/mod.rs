//! Pod networking through CNI, as every Kubernetes runtime does it, so Calico,
//! Cilium, Flannel and the reference plugins work unchanged.
//!
//! berthd pins each pod's network namespace at a file; [`Cni::setup`] runs the
//! configured plugin list against it (ADD) and returns the pod's addresses,
//! [`Cni::teardown`] undoes it (DEL, idempotent, survives restarts through the
//! on-disk result cache), [`Cni::status`] is the CRI `NetworkReady` condition.
//! [`write_pod_files`] writes the pod's hostname, hosts and resolv.conf.
//!
//! Layout: `conf` finds and parses the config list, `plugin` runs one plugin
//! binary, `result` reads its output, `cache` persists ADD results, `cni`
//! ties them together, `pod_files` writes the /etc files, `counters` reads
//! a pod's interface counters, `types` holds the data exchanged with the pod
//! lifecycle and `from_cri` converts CRI messages.

mod cache;
mod cni;
mod conf;
mod counters;
mod from_cri;
mod plugin;
mod pod_files;
mod result;
mod types;

pub use cni::{Cni, NOT_READY_REASON, POD_IFNAME};
pub use counters::{interface_counters, InterfaceCounters};
pub use from_cri::is_host_network;
pub use pod_files::{write_pod_files, PodFiles};
pub use types::{
    Bandwidth, CniConfig, DnsSettings, NetworkStatus, PodIps, PodNetwork, PortMapping,
    EGRESS_BANDWIDTH_ANNOTATION, INGRESS_BANDWIDTH_ANNOTATION,
};

//! PodSandboxStats, ListPodSandboxStats and StreamPodSandboxStats: the sum of
//! the pod's containers (berth pods have no process of their own), plus the
//! byte and error counters of the interfaces in the pod's network namespace.
//! Host-network pods report no network usage: their interfaces are the
//! node's, shared with everything else, so no counter belongs to the pod
//! (kubelet takes node network stats elsewhere).

use berth_proto::v1::{
    CpuUsage, LinuxPodSandboxStats, ListPodSandboxStatsRequest, ListPodSandboxStatsResponse,
    MemoryUsage, NetworkInterfaceUsage, NetworkUsage, PodSandboxAttributes, PodSandboxStats,
    PodSandboxStatsFilter, PodSandboxStatsRequest, PodSandboxStatsResponse, ProcessUsage,
    StreamPodSandboxStatsRequest, StreamPodSandboxStatsResponse, UInt64Value,
};

use super::container_status::STREAM_PAGE;
use super::lifecycle::{blocking, Lifecycle};
use super::{BoxStream, CriService};
use crate::error::{Error, Result};
use crate::network::{InterfaceCounters, POD_IFNAME};
use crate::state::{id_matches, labels_match, now_nanos, PodRecord, PodState};

impl Lifecycle {
    /// The pod's interface counters; `None` for a host-network pod, or when
    /// its namespace cannot be read (logged: stats are best effort, as the
    /// pod may be going away while it is sampled).
    pub(crate) async fn pod_network_usage(&self, pod: &PodRecord) -> Option<NetworkUsage> {
        let netns = pod.namespaces.net.clone()?;
        let counters = match crate::network::interface_counters(netns).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(pod_sandbox_id = %pod.id, error = %e, "no network stats");
                return None;
            }
        };
        Some(network_usage(now_nanos(), counters))
    }

    async fn pod_stats_of(&self, pod: &PodRecord) -> Result<PodSandboxStats> {
        let containers = self.all_container_stats(|c| c.pod_id == pod.id).await?;
        let sum =
            |f: &dyn Fn(&berth_proto::v1::ContainerStats) -> Option<u64>| -> Option<UInt64Value> {
                let vals: Vec<u64> = containers.iter().filter_map(f).collect();
                (!vals.is_empty()).then(|| UInt64Value {
                    value: vals.iter().sum(),
                })
            };
        let ts = now_nanos();
        let cpu = CpuUsage {
            timestamp: ts,
            usage_core_nano_seconds: sum(&|c| {
                c.cpu
                    .as_ref()?
                    .usage_core_nano_seconds
                    .as_ref()
                    .map(|v| v.value)
            }),
            usage_nano_cores: sum(&|c| c.cpu.as_ref()?.usage_nano_cores.as_ref().map(|v| v.value)),
            psi: None,
        };
        let memory = MemoryUsage {
            timestamp: ts,
            working_set_bytes: sum(&|c| {
                c.memory
                    .as_ref()?
                    .working_set_bytes
                    .as_ref()
                    .map(|v| v.value)
            }),
            usage_bytes: sum(&|c| c.memory.as_ref()?.usage_bytes.as_ref().map(|v| v.value)),
            ..Default::default()
        };
        let mut pids = 0u64;
        for c in self
            .containers
            .records_where(|c| c.pod_id == pod.id && c.state.is_running())
        {
            let (dir, rt) = (c.state_dir.clone(), self.runtime.clone());
            if let Ok(s) = blocking(move || rt.stats(&dir)).await {
                pids += s.pids;
            }
        }
        Ok(PodSandboxStats {
            attributes: Some(PodSandboxAttributes {
                id: pod.id.clone(),
                metadata: Some(pod.metadata()),
                labels: pod.config.labels.clone(),
                annotations: pod.config.annotations.clone(),
            }),
            linux: Some(LinuxPodSandboxStats {
                cpu: Some(cpu),
                memory: Some(memory),
                network: self.pod_network_usage(pod).await,
                process: Some(ProcessUsage {
                    timestamp: ts,
                    process_count: Some(UInt64Value { value: pids }),
                }),
                containers,
                io: None,
            }),
            windows: None,
        })
    }

    async fn all_pod_stats(&self, f: &PodSandboxStatsFilter) -> Result<Vec<PodSandboxStats>> {
        let mut out = Vec::new();
        for p in self.pods.records() {
            if p.state == PodState::Ready
                && id_matches(&f.id, &p.id)
                && labels_match(&f.label_selector, &p.config.labels)
            {
                out.push(self.pod_stats_of(&p).await?);
            }
        }
        Ok(out)
    }
}

/// The CRI form: every interface but loopback (pod-internal traffic is not
/// network usage), the CNI interface as the default one.
fn network_usage(ts: i64, counters: Vec<InterfaceCounters>) -> NetworkUsage {
    let interfaces: Vec<NetworkInterfaceUsage> = counters
        .into_iter()
        .filter(|c| c.name != "lo")
        .map(|c| NetworkInterfaceUsage {
            name: c.name,
            rx_bytes: Some(UInt64Value { value: c.rx_bytes }),
            rx_errors: Some(UInt64Value { value: c.rx_errors }),
            tx_bytes: Some(UInt64Value { value: c.tx_bytes }),
            tx_errors: Some(UInt64Value { value: c.tx_errors }),
        })
        .collect();
    let default_interface = interfaces
        .iter()
        .find(|i| i.name == POD_IFNAME)
        .or(interfaces.first())
        .cloned();
    NetworkUsage {
        timestamp: ts,
        default_interface,
        interfaces,
    }
}

impl CriService {
    pub(crate) async fn pod_sandbox_stats(
        &self,
        req: PodSandboxStatsRequest,
    ) -> Result<PodSandboxStatsResponse> {
        let lc = &self.lifecycle;
        let (id, entry) = lc.pods.must_find(&req.pod_sandbox_id)?;
        let pod = entry.get();
        if pod.state != PodState::Ready {
            return Err(Error::NotFound(format!(
                "pod sandbox {id} is not ready: it has no stats"
            )));
        }
        Ok(PodSandboxStatsResponse {
            stats: Some(lc.pod_stats_of(&pod).await?),
        })
    }

    pub(crate) async fn list_pod_sandbox_stats(
        &self,
        req: ListPodSandboxStatsRequest,
    ) -> Result<ListPodSandboxStatsResponse> {
        let f = req.filter.unwrap_or_default();
        Ok(ListPodSandboxStatsResponse {
            stats: self.lifecycle.all_pod_stats(&f).await?,
        })
    }

    pub(crate) async fn stream_pod_sandbox_stats(
        &self,
        req: StreamPodSandboxStatsRequest,
    ) -> Result<BoxStream<StreamPodSandboxStatsResponse>> {
        let f = req.filter.unwrap_or_default();
        let all = self.lifecycle.all_pod_stats(&f).await?;
        let pages: Vec<_> = all
            .chunks(STREAM_PAGE)
            .map(|c| {
                Ok(StreamPodSandboxStatsResponse {
                    pod_sandbox_stats: c.to_vec(),
                })
            })
            .collect();
        Ok(Box::pin(futures::stream::iter(pages)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(name: &str, rx: u64) -> InterfaceCounters {
        InterfaceCounters {
            name: name.into(),
            rx_bytes: rx,
            rx_errors: 1,
            tx_bytes: 2 * rx,
            tx_errors: 3,
        }
    }

    #[test]
    fn loopback_is_left_out_and_eth0_is_the_default_interface() {
        let u = network_usage(
            7,
            vec![
                counters("lo", 5),
                counters("net1", 10),
                counters("eth0", 20),
            ],
        );
        assert_eq!(u.timestamp, 7);
        let names: Vec<_> = u.interfaces.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["net1", "eth0"]);
        let d = u.default_interface.unwrap();
        assert_eq!(d.name, "eth0");
        assert_eq!(d.rx_bytes.unwrap().value, 20);
        assert_eq!(d.tx_bytes.unwrap().value, 40);
        assert_eq!(
            (d.rx_errors.unwrap().value, d.tx_errors.unwrap().value),
            (1, 3)
        );
        // Only loopback (the loopback-only CNI config): no default interface.
        let u = network_usage(1, vec![counters("lo", 5)]);
        assert!(u.interfaces.is_empty() && u.default_interface.is_none());
    }
}

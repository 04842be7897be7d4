//! ListMetricDescriptors, ListPodSandboxMetrics and StreamPodSandboxMetrics:
//! the cAdvisor-named metrics kubelet exposes on `/metrics/cadvisor` when it
//! takes them from the runtime (PodAndContainerStatsFromCRI).
//!
//! The values come from the same sources as the stats RPCs: each container's
//! cgroup through the runtime, and the pod's interface counters from its
//! network namespace. Pod-level metrics are the sum of the pod's containers
//! (berth pods have no process of their own) plus the network metrics, which
//! only a pod has: its containers share its network namespace.
//!
//! Units follow the names: `_seconds_total` is whole seconds, since a CRI
//! metric value is an unsigned integer.

use berth_proto::v1::{
    ContainerMetrics, ListMetricDescriptorsRequest, ListMetricDescriptorsResponse,
    ListPodSandboxMetricsRequest, ListPodSandboxMetricsResponse, Metric, MetricDescriptor,
    MetricType, PodSandboxMetrics, StreamPodSandboxMetricsRequest, StreamPodSandboxMetricsResponse,
    UInt64Value,
};

use super::container_status::STREAM_PAGE;
use super::lifecycle::{blocking, Lifecycle};
use super::{BoxStream, CriService};
use crate::error::Result;
use crate::state::{now_nanos, ContainerRecord, ContainerState, PodRecord, PodState};

/// Labels of every metric, in this order: the container's name (empty for
/// the pod itself), the container's or pod's id, the container's image, the
/// pod's namespace and name.
const LABELS: &[&str] = &["container", "id", "image", "namespace", "pod"];
/// [`LABELS`] plus the interface, for the pod's network metrics.
const NETWORK_LABELS: &[&str] = &["container", "id", "image", "namespace", "pod", "interface"];

/// One metric berth reports.
struct Descriptor {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    network: bool,
}

const CPU_USAGE: &str = "container_cpu_usage_seconds_total";
const MEMORY_USAGE: &str = "container_memory_usage_bytes";
const MEMORY_WORKING_SET: &str = "container_memory_working_set_bytes";
const MEMORY_LIMIT: &str = "container_spec_memory_limit_bytes";
const PROCESSES: &str = "container_processes";
const OOM_EVENTS: &str = "container_oom_events_total";
const RX_BYTES: &str = "container_network_receive_bytes_total";
const TX_BYTES: &str = "container_network_transmit_bytes_total";
const RX_ERRORS: &str = "container_network_receive_errors_total";
const TX_ERRORS: &str = "container_network_transmit_errors_total";

const DESCRIPTORS: &[Descriptor] = &[
    Descriptor {
        name: CPU_USAGE,
        help: "Cumulative cpu time consumed in seconds.",
        kind: MetricType::Counter,
        network: false,
    },
    Descriptor {
        name: MEMORY_USAGE,
        help: "Current memory usage in bytes, including all memory regardless of when it was accessed.",
        kind: MetricType::Gauge,
        network: false,
    },
    Descriptor {
        name: MEMORY_WORKING_SET,
        help: "Current working set in bytes.",
        kind: MetricType::Gauge,
        network: false,
    },
    Descriptor {
        name: MEMORY_LIMIT,
        help: "Memory limit for the container in bytes (0 when unlimited).",
        kind: MetricType::Gauge,
        network: false,
    },
    Descriptor {
        name: PROCESSES,
        help: "Number of processes running inside the container.",
        kind: MetricType::Gauge,
        network: false,
    },
    Descriptor {
        name: OOM_EVENTS,
        help: "Count of out of memory events observed for the container.",
        kind: MetricType::Counter,
        network: false,
    },
    Descriptor {
        name: RX_BYTES,
        help: "Cumulative count of bytes received.",
        kind: MetricType::Counter,
        network: true,
    },
    Descriptor {
        name: TX_BYTES,
        help: "Cumulative count of bytes transmitted.",
        kind: MetricType::Counter,
        network: true,
    },
    Descriptor {
        name: RX_ERRORS,
        help: "Cumulative count of errors encountered while receiving.",
        kind: MetricType::Counter,
        network: true,
    },
    Descriptor {
        name: TX_ERRORS,
        help: "Cumulative count of errors encountered while transmitting.",
        kind: MetricType::Counter,
        network: true,
    },
];

fn kind_of(name: &str) -> MetricType {
    DESCRIPTORS
        .iter()
        .find(|d| d.name == name)
        .map(|d| d.kind)
        .unwrap_or(MetricType::Gauge)
}

/// Collects the metrics of one object (pod or container) under one label set.
struct Sink {
    ts: i64,
    labels: Vec<String>,
    out: Vec<Metric>,
}

impl Sink {
    fn new(ts: i64, labels: Vec<String>) -> Sink {
        Sink {
            ts,
            labels,
            out: Vec::new(),
        }
    }

    fn push(&mut self, name: &str, value: u64) {
        self.push_labelled(name, value, None);
    }

    fn push_labelled(&mut self, name: &str, value: u64, interface: Option<&str>) {
        let mut label_values = self.labels.clone();
        label_values.extend(interface.map(str::to_string));
        self.out.push(Metric {
            name: name.to_string(),
            timestamp: self.ts,
            metric_type: kind_of(name) as i32,
            label_values,
            value: Some(UInt64Value { value }),
        });
    }

    /// The usage metrics of a cgroup sample (or of a sum of them).
    fn usage(&mut self, s: &berth_runtime::Stats, memory_limit: u64) {
        self.push(CPU_USAGE, s.cpu_usage_ns / 1_000_000_000);
        self.push(MEMORY_USAGE, s.memory_usage_bytes);
        self.push(MEMORY_WORKING_SET, s.memory_working_set_bytes);
        self.push(MEMORY_LIMIT, memory_limit);
        self.push(PROCESSES, s.pids);
        self.push(OOM_EVENTS, s.oom_events);
    }
}

fn image_of(c: &ContainerRecord) -> String {
    c.config
        .image
        .as_ref()
        .map(|i| i.image.clone())
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| c.image_ref.clone())
}

impl Lifecycle {
    async fn pod_metrics_of(&self, pod: &PodRecord) -> Result<PodSandboxMetrics> {
        let md = pod.metadata();
        let ts = now_nanos();
        let mut total = berth_runtime::Stats::default();
        let mut container_metrics = Vec::new();
        let containers = self.containers.records_where(|c| {
            c.pod_id == pod.id
                && matches!(c.state, ContainerState::Created | ContainerState::Running)
        });
        for c in containers {
            let (dir, rt) = (c.state_dir.clone(), self.runtime.clone());
            let sampled = blocking(move || rt.stats(&dir)).await;
            let s = match sampled {
                Ok(s) => s,
                // Gone between the listing and the sample: it has no metrics.
                Err(e) if e.code() == tonic::Code::NotFound => continue,
                Err(e) => return Err(e),
            };
            total.cpu_usage_ns += s.cpu_usage_ns;
            total.memory_usage_bytes += s.memory_usage_bytes;
            total.memory_working_set_bytes += s.memory_working_set_bytes;
            total.pids += s.pids;
            total.oom_events += s.oom_events;
            let limit = c
                .config
                .linux
                .as_ref()
                .and_then(|l| l.resources.as_ref())
                .map(|r| u64::try_from(r.memory_limit_in_bytes).unwrap_or(0))
                .unwrap_or(0);
            let name = c.metadata().name;
            let mut sink = Sink::new(
                ts,
                vec![
                    name,
                    c.id.clone(),
                    image_of(&c),
                    md.namespace.clone(),
                    md.name.clone(),
                ],
            );
            sink.usage(&s, limit);
            container_metrics.push(ContainerMetrics {
                container_id: c.id.clone(),
                metrics: sink.out,
            });
        }
        let mut sink = Sink::new(
            ts,
            vec![
                String::new(),
                pod.id.clone(),
                String::new(),
                md.namespace.clone(),
                md.name.clone(),
            ],
        );
        let pod_limit = pod
            .resources
            .as_ref()
            .and_then(|r| r.memory_limit())
            .and_then(|l| u64::try_from(l).ok())
            .unwrap_or(0);
        sink.usage(&total, pod_limit);
        // Host-network pods have no network metrics of their own (see
        // `pod_network_usage`).
        if let Some(net) = self.pod_network_usage(pod).await {
            for i in &net.interfaces {
                let v = |x: &Option<UInt64Value>| x.as_ref().map(|v| v.value).unwrap_or(0);
                sink.push_labelled(RX_BYTES, v(&i.rx_bytes), Some(&i.name));
                sink.push_labelled(TX_BYTES, v(&i.tx_bytes), Some(&i.name));
                sink.push_labelled(RX_ERRORS, v(&i.rx_errors), Some(&i.name));
                sink.push_labelled(TX_ERRORS, v(&i.tx_errors), Some(&i.name));
            }
        }
        Ok(PodSandboxMetrics {
            pod_sandbox_id: pod.id.clone(),
            metrics: sink.out,
            container_metrics,
        })
    }

    /// One entry per ready pod.
    async fn all_pod_metrics(&self) -> Result<Vec<PodSandboxMetrics>> {
        let mut out = Vec::new();
        for p in self.pods.records() {
            if p.state == PodState::Ready {
                out.push(self.pod_metrics_of(&p).await?);
            }
        }
        Ok(out)
    }
}

impl CriService {
    pub(crate) async fn list_metric_descriptors(
        &self,
        _req: ListMetricDescriptorsRequest,
    ) -> Result<ListMetricDescriptorsResponse> {
        Ok(ListMetricDescriptorsResponse {
            descriptors: descriptors(),
        })
    }

    pub(crate) async fn list_pod_sandbox_metrics(
        &self,
        _req: ListPodSandboxMetricsRequest,
    ) -> Result<ListPodSandboxMetricsResponse> {
        Ok(ListPodSandboxMetricsResponse {
            pod_metrics: self.lifecycle.all_pod_metrics().await?,
        })
    }

    pub(crate) async fn stream_pod_sandbox_metrics(
        &self,
        _req: StreamPodSandboxMetricsRequest,
    ) -> Result<BoxStream<StreamPodSandboxMetricsResponse>> {
        let all = self.lifecycle.all_pod_metrics().await?;
        let pages: Vec<_> = all
            .chunks(STREAM_PAGE)
            .map(|c| {
                Ok(StreamPodSandboxMetricsResponse {
                    pod_sandbox_metrics: c.to_vec(),
                })
            })
            .collect();
        Ok(Box::pin(futures::stream::iter(pages)))
    }
}

fn descriptors() -> Vec<MetricDescriptor> {
    DESCRIPTORS
        .iter()
        .map(|d| MetricDescriptor {
            name: d.name.to_string(),
            help: d.help.to_string(),
            label_keys: if d.network { NETWORK_LABELS } else { LABELS }
                .iter()
                .map(|s| s.to_string())
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_has_a_descriptor_with_matching_label_count() {
        let d = descriptors();
        let names: Vec<_> = d.iter().map(|d| d.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "duplicate descriptor");
        let mut sink = Sink::new(5, LABELS.iter().map(|s| s.to_string()).collect());
        sink.usage(
            &berth_runtime::Stats {
                cpu_usage_ns: 2_500_000_000,
                pids: 3,
                ..Default::default()
            },
            7,
        );
        sink.push_labelled(RX_BYTES, 9, Some("eth0"));
        for m in &sink.out {
            let desc = d.iter().find(|d| d.name == m.name).expect(&m.name);
            assert_eq!(desc.label_keys.len(), m.label_values.len(), "{}", m.name);
            assert_eq!(m.timestamp, 5);
        }
        let get = |n: &str| sink.out.iter().find(|m| m.name == n).unwrap();
        assert_eq!(get(CPU_USAGE).value.as_ref().unwrap().value, 2);
        assert_eq!(get(CPU_USAGE).metric_type, MetricType::Counter as i32);
        assert_eq!(get(PROCESSES).metric_type, MetricType::Gauge as i32);
        assert_eq!(get(MEMORY_LIMIT).value.as_ref().unwrap().value, 7);
        assert_eq!(get(RX_BYTES).label_values.last().unwrap(), "eth0");
    }
}

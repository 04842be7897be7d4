//! PodSandboxStats, ListPodSandboxStats and StreamPodSandboxStats: the sum of
//! the pod's containers (berth pods have no process of their own). Network
//! usage stays empty until CNI lands.

use berth_proto::v1::{
    CpuUsage, LinuxPodSandboxStats, ListPodSandboxStatsRequest, ListPodSandboxStatsResponse,
    MemoryUsage, PodSandboxAttributes, PodSandboxStats, PodSandboxStatsFilter,
    PodSandboxStatsRequest, PodSandboxStatsResponse, ProcessUsage, StreamPodSandboxStatsRequest,
    StreamPodSandboxStatsResponse, UInt64Value,
};

use super::container_runtime::Lifecycle;
use super::container_status::STREAM_PAGE;
use super::{BoxStream, CriService};
use crate::error::{Error, Result};
use crate::state::{id_matches, labels_match, now_nanos, PodRecord, PodState};

impl Lifecycle {
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
            .records()
            .iter()
            .filter(|c| c.pod_id == pod.id && c.state.is_running())
        {
            let dir = c.state_dir.clone();
            if let Ok(Ok(s)) = tokio::task::spawn_blocking(move || {
                berth_runtime::Container::load(&dir).and_then(|c| c.stats())
            })
            .await
            {
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
                network: None,
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

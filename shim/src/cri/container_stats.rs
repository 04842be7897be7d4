//! ContainerStats, ListContainerStats and StreamContainerStats: cgroup usage
//! from the runtime plus the size of the container's writable layer.
//! `usage_nano_cores` is a rate, so it needs the previous sample of the same
//! container: the first call after start reports none.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use berth_proto::v1::{
    ContainerAttributes, ContainerStats, ContainerStatsFilter, ContainerStatsRequest,
    ContainerStatsResponse, CpuUsage, FilesystemIdentifier, FilesystemUsage,
    ListContainerStatsRequest, ListContainerStatsResponse, MemoryUsage,
    StreamContainerStatsRequest, StreamContainerStatsResponse, UInt64Value,
};

use super::container_status::STREAM_PAGE;
use super::lifecycle::{blocking, Lifecycle};
use super::{BoxStream, CriService};
use crate::error::{Error, Result};
use crate::state::{id_matches, labels_match, now_nanos, ContainerRecord, ContainerState};

fn value(v: u64) -> Option<UInt64Value> {
    Some(UInt64Value { value: v })
}

impl Lifecycle {
    /// Stats of one live container; `None` when it has no cgroup any more.
    pub(crate) async fn container_stats_of(
        &self,
        rec: &ContainerRecord,
    ) -> Result<Option<ContainerStats>> {
        if !matches!(rec.state, ContainerState::Created | ContainerState::Running) {
            return Ok(None);
        }
        let (dir, rt) = (rec.state_dir.clone(), self.runtime.clone());
        let upper = self.bundle_dir(&rec.id).join("upper");
        let sampled = blocking(move || {
            let s = rt.stats(&dir);
            Ok((s, dir_usage(&upper)))
        })
        .await?;
        let stats = match sampled.0 {
            Ok(s) => s,
            // Removed between the listing and the sample (the runtime's own
            // NOT_FOUND): it has no stats, and the others still do.
            Err(e) if e.code() == tonic::Code::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let (used, inodes) = sampled.1;
        let ts = now_nanos();
        Ok(Some(ContainerStats {
            attributes: Some(ContainerAttributes {
                id: rec.id.clone(),
                metadata: Some(rec.metadata()),
                labels: rec.config.labels.clone(),
                annotations: rec.config.annotations.clone(),
            }),
            cpu: Some(CpuUsage {
                timestamp: ts,
                usage_core_nano_seconds: value(stats.cpu_usage_ns),
                usage_nano_cores: self
                    .cpu_samples
                    .rate(&rec.id, ts, stats.cpu_usage_ns)
                    .and_then(value),
                psi: None,
            }),
            memory: Some(MemoryUsage {
                timestamp: ts,
                working_set_bytes: value(stats.memory_working_set_bytes),
                usage_bytes: value(stats.memory_usage_bytes),
                page_faults: value(stats.page_faults),
                major_page_faults: value(stats.major_page_faults),
                ..Default::default()
            }),
            writable_layer: Some(FilesystemUsage {
                timestamp: ts,
                fs_id: Some(FilesystemIdentifier {
                    mountpoint: self.config.root.join("containers").display().to_string(),
                }),
                used_bytes: value(used),
                inodes_used: value(inodes),
            }),
            swap: None,
            io: None,
        }))
    }

    /// Stats of every live container passing `keep`.
    pub(crate) async fn all_container_stats(
        &self,
        keep: impl Fn(&ContainerRecord) -> bool,
    ) -> Result<Vec<ContainerStats>> {
        self.cpu_samples.retain(&self.containers.ids());
        let mut out = Vec::new();
        for r in self.containers.records_where(keep).iter() {
            if let Some(s) = self.container_stats_of(r).await? {
                out.push(s);
            }
        }
        Ok(out)
    }
}

impl CriService {
    pub(crate) async fn container_stats(
        &self,
        req: ContainerStatsRequest,
    ) -> Result<ContainerStatsResponse> {
        let lc = &self.lifecycle;
        let (id, entry) = lc.containers.must_find(&req.container_id)?;
        let rec = entry.get();
        let stats = lc.container_stats_of(&rec).await?.ok_or_else(|| {
            Error::NotFound(format!("container {id} is not running: it has no stats"))
        })?;
        Ok(ContainerStatsResponse { stats: Some(stats) })
    }

    pub(crate) async fn list_container_stats(
        &self,
        req: ListContainerStatsRequest,
    ) -> Result<ListContainerStatsResponse> {
        let f = req.filter.unwrap_or_default();
        Ok(ListContainerStatsResponse {
            stats: self
                .lifecycle
                .all_container_stats(|r| stats_matches(&f, r))
                .await?,
        })
    }

    pub(crate) async fn stream_container_stats(
        &self,
        req: StreamContainerStatsRequest,
    ) -> Result<BoxStream<StreamContainerStatsResponse>> {
        let f = req.filter.unwrap_or_default();
        let all = self
            .lifecycle
            .all_container_stats(|r| stats_matches(&f, r))
            .await?;
        let pages: Vec<_> = all
            .chunks(STREAM_PAGE)
            .map(|c| {
                Ok(StreamContainerStatsResponse {
                    container_stats: c.to_vec(),
                })
            })
            .collect();
        Ok(Box::pin(futures::stream::iter(pages)))
    }
}

fn stats_matches(f: &ContainerStatsFilter, r: &ContainerRecord) -> bool {
    id_matches(&f.id, &r.id)
        && id_matches(&f.pod_sandbox_id, &r.pod_id)
        && labels_match(&f.label_selector, &r.config.labels)
}

/// Bytes allocated and inodes used under `dir` (hard links counted once);
/// a missing directory is empty.
pub(crate) fn dir_usage(dir: &Path) -> (u64, u64) {
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![dir.to_path_buf()];
    let (mut bytes, mut inodes) = (0u64, 0u64);
    while let Some(p) = stack.pop() {
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if !seen.insert((md.dev(), md.ino())) {
            continue;
        }
        bytes += md.blocks() * 512;
        inodes += 1;
        if md.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        }
    }
    (bytes, inodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_usage_counts_files_and_hard_links_once() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("f"), vec![1u8; 10_000]).unwrap();
        std::fs::hard_link(d.path().join("f"), d.path().join("g")).unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        let (bytes, inodes) = dir_usage(d.path());
        assert_eq!(inodes, 3, "dir, f (= g), sub");
        assert!(bytes >= 10_000, "{bytes}");
        assert_eq!(dir_usage(&d.path().join("missing")), (0, 0));
    }

    mod through_the_rpc {
        use super::*;
        use crate::cri::lifecycle::fake::TestCri;
        use crate::cri::lifecycle::ContainerRuntime;

        #[tokio::test]
        async fn stats_come_from_the_runtime_and_the_cpu_rate_needs_two_samples() {
            let t = TestCri::new().await;
            let id = t.add_container("web", ContainerState::Running);
            let req = || ContainerStatsRequest {
                container_id: id.clone(),
            };
            let s = t.cri.container_stats(req()).await.unwrap().stats.unwrap();
            let cpu = s.cpu.unwrap();
            assert_eq!(cpu.usage_core_nano_seconds.unwrap().value, 1_000);
            assert!(cpu.usage_nano_cores.is_none(), "one sample has no rate");
            assert_eq!(s.memory.unwrap().usage_bytes.unwrap().value, 4096);
            let again = t.cri.container_stats(req()).await.unwrap().stats.unwrap();
            assert!(again.cpu.unwrap().usage_nano_cores.is_some());
        }

        #[tokio::test]
        async fn a_container_gone_from_the_runtime_drops_out_of_the_list_without_failing_it() {
            let t = TestCri::new().await;
            let kept = t.add_container("kept", ContainerState::Running);
            let gone = t.add_container("gone", ContainerState::Running);
            t.runtime.delete(&t.state_dir(&gone)).unwrap();
            let all = t
                .cri
                .list_container_stats(ListContainerStatsRequest::default())
                .await
                .unwrap()
                .stats;
            let ids: Vec<_> = all
                .iter()
                .map(|s| s.attributes.as_ref().unwrap().id.clone())
                .collect();
            assert_eq!(ids, vec![kept]);
            let e = t
                .cri
                .container_stats(ContainerStatsRequest { container_id: gone })
                .await
                .unwrap_err();
            assert_eq!(e.code(), tonic::Code::NotFound, "{e}");
        }

        #[tokio::test]
        async fn other_runtime_failures_are_reported_not_hidden() {
            let t = TestCri::new().await;
            let id = t.add_container("web", ContainerState::Running);
            t.runtime
                .fail("stats", || Error::Runtime("fake: cgroup unreadable".into()));
            let e = t
                .cri
                .container_stats(ContainerStatsRequest { container_id: id })
                .await
                .unwrap_err();
            assert!(e.to_string().contains("cgroup unreadable"), "{e}");
        }
    }
}

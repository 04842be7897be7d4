//! `berth stats` and `berth statsp`: resource usage tables.

use std::collections::HashMap;
use std::time::Duration;

use berth_proto::v1::{
    ContainerFilter, ContainerState, ContainerStateValue, ContainerStats, ContainerStatsFilter,
    CpuUsage, ListContainerStatsRequest, ListContainerStatsResponse, ListContainersRequest,
    ListPodSandboxRequest, PodSandboxFilter, PodSandboxState, PodSandboxStateValue,
    PodSandboxStatsRequest,
};
use clap::Args;

use super::output::{self, Table};
use super::{list, parse_labels};
use crate::client::CriClient;
use crate::error::Result;

/// `berth stats [ID]`.
#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Only this container.
    pub container: Option<String>,
    /// Include containers that are not running.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only this container id.
    #[arg(long)]
    pub id: Option<String>,
    /// Only containers of this pod sandbox id.
    #[arg(short = 'p', long)]
    pub pod: Option<String>,
    /// Only containers with this label (key=value), repeatable.
    #[arg(long)]
    pub label: Vec<String>,
    /// Output format: table, json or yaml.
    #[arg(short = 'o', long, default_value = "table")]
    pub output: String,
}

/// `berth statsp [ID]`.
#[derive(Args, Debug)]
pub struct StatspArgs {
    /// Only this pod sandbox.
    pub pod: Option<String>,
    /// Only pods with this label (key=value), repeatable.
    #[arg(long)]
    pub label: Vec<String>,
    /// Output format: table, json or yaml.
    #[arg(short = 'o', long, default_value = "table")]
    pub output: String,
}

/// How long between the two CPU samples when the runtime gives no rate.
const SAMPLE: Duration = Duration::from_secs(1);

/// CPU percent from a rate, or from two cumulative samples.
pub fn cpu_percent(first: Option<&CpuUsage>, second: Option<&CpuUsage>) -> f64 {
    let Some(second) = second else { return 0.0 };
    if let Some(rate) = second.usage_nano_cores.as_ref().filter(|r| r.value > 0) {
        return rate.value as f64 / 1e7;
    }
    let Some(first) = first else { return 0.0 };
    let used = |c: &CpuUsage| c.usage_core_nano_seconds.as_ref().map_or(0, |v| v.value);
    let elapsed = second.timestamp.saturating_sub(first.timestamp);
    if elapsed <= 0 {
        return 0.0;
    }
    used(second).saturating_sub(used(first)) as f64 / elapsed as f64 * 100.0
}

fn mem(s: &Option<berth_proto::v1::MemoryUsage>) -> String {
    let bytes = s
        .as_ref()
        .and_then(|m| m.working_set_bytes.as_ref())
        .map_or(0, |v| v.value);
    output::human_size(bytes as f64, 4)
}

/// `berth stats`.
pub async fn stats(cri: &mut CriClient, a: StatsArgs) -> Result<()> {
    output::check_list_format(&a.output)?;
    let filter = ContainerStatsFilter {
        id: a.container.clone().or(a.id.clone()).unwrap_or_default(),
        pod_sandbox_id: a.pod.clone().unwrap_or_default(),
        label_selector: parse_labels(&a.label)?,
    };
    let running: Option<std::collections::HashSet<String>> = if a.all {
        None
    } else {
        Some(
            cri.runtime
                .list_containers(ListContainersRequest {
                    filter: Some(ContainerFilter {
                        state: Some(ContainerStateValue {
                            state: ContainerState::ContainerRunning as i32,
                        }),
                        ..Default::default()
                    }),
                })
                .await?
                .into_inner()
                .containers
                .into_iter()
                .map(|c| c.id)
                .collect(),
        )
    };
    let sample = || {
        let mut rt = cri.runtime.clone();
        let filter = filter.clone();
        async move {
            rt.list_container_stats(ListContainerStatsRequest {
                filter: Some(filter),
            })
            .await
            .map(|r| r.into_inner().stats)
        }
    };
    let keep = |s: &ContainerStats| {
        let id = s.attributes.as_ref().map(|a| a.id.as_str()).unwrap_or("");
        running.as_ref().is_none_or(|r| r.contains(id))
    };
    let mut second: Vec<ContainerStats> = sample().await?;
    second.retain(keep);
    let doc = |stats| output::to_value(&ListContainerStatsResponse { stats });
    let Some(mut second) = list::doc_or_ids(&a.output, false, second, |_| "", doc)? else {
        return Ok(());
    };
    let mut first: HashMap<String, Option<CpuUsage>> = HashMap::new();
    let needs_second_sample = second
        .iter()
        .any(|s| s.cpu.as_ref().is_none_or(|c| c.usage_nano_cores.is_none()));
    if needs_second_sample {
        for s in &second {
            first.insert(s.attributes.clone().unwrap_or_default().id, s.cpu);
        }
        tokio::time::sleep(SAMPLE).await;
        second = sample().await?;
        second.retain(keep);
    }
    let mut t = Table::new(&["CONTAINER", "NAME", "CPU %", "MEM", "DISK", "INODES"]);
    for s in &second {
        let attrs = s.attributes.clone().unwrap_or_default();
        let prev = first.get(&attrs.id).cloned().flatten();
        let disk = s.writable_layer.as_ref();
        t.row(vec![
            output::short_id(&attrs.id, false),
            attrs.metadata.map(|m| m.name).unwrap_or_default(),
            format!("{:.2}", cpu_percent(prev.as_ref(), s.cpu.as_ref())),
            mem(&s.memory),
            output::human_size(
                disk.and_then(|d| d.used_bytes.as_ref())
                    .map_or(0, |v| v.value) as f64,
                4,
            ),
            disk.and_then(|d| d.inodes_used.as_ref())
                .map_or(0, |v| v.value)
                .to_string(),
        ]);
    }
    t.print();
    Ok(())
}

/// `berth statsp`.
pub async fn statsp(cri: &mut CriClient, a: StatspArgs) -> Result<()> {
    output::check_list_format(&a.output)?;
    let pods = cri
        .runtime
        .list_pod_sandbox(ListPodSandboxRequest {
            filter: Some(PodSandboxFilter {
                id: a.pod.clone().unwrap_or_default(),
                state: Some(PodSandboxStateValue {
                    state: PodSandboxState::SandboxReady as i32,
                }),
                label_selector: parse_labels(&a.label)?,
            }),
        })
        .await?
        .into_inner()
        .items;
    let mut all = Vec::new();
    for p in &pods {
        let s = cri
            .runtime
            .pod_sandbox_stats(PodSandboxStatsRequest {
                pod_sandbox_id: p.id.clone(),
            })
            .await?
            .into_inner()
            .stats;
        if let Some(s) = s {
            all.push(s);
        }
    }
    let doc = |all: Vec<berth_proto::v1::PodSandboxStats>| -> Result<serde_json::Value> {
        let stats = all
            .iter()
            .map(output::to_value)
            .collect::<Result<Vec<_>>>()?;
        Ok(serde_json::json!({ "stats": stats }))
    };
    let Some(all) = list::doc_or_ids(&a.output, false, all, |_| "", doc)? else {
        return Ok(());
    };
    let mut t = Table::new(&["POD", "POD ID", "CPU %", "MEM"]);
    for s in &all {
        let attrs = s.attributes.clone().unwrap_or_default();
        let linux = s.linux.clone().unwrap_or_default();
        t.row(vec![
            attrs.metadata.map(|m| m.name).unwrap_or_default(),
            output::short_id(&attrs.id, false),
            format!("{:.2}", cpu_percent(None, linux.cpu.as_ref())),
            mem(&linux.memory),
        ]);
    }
    t.print();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::UInt64Value;

    fn cpu(ts: i64, total: u64, rate: Option<u64>) -> CpuUsage {
        CpuUsage {
            timestamp: ts,
            usage_core_nano_seconds: Some(UInt64Value { value: total }),
            usage_nano_cores: rate.map(|value| UInt64Value { value }),
            psi: None,
        }
    }

    #[test]
    fn cpu_percent_from_rate_or_samples() {
        // Half a core as a rate.
        assert_eq!(cpu_percent(None, Some(&cpu(0, 0, Some(500_000_000)))), 50.0);
        // A quarter core used over one second between samples.
        let a = cpu(1_000_000_000, 1_000, None);
        let b = cpu(2_000_000_000, 250_001_000, None);
        assert_eq!(cpu_percent(Some(&a), Some(&b)), 25.0);
        assert_eq!(cpu_percent(Some(&b), Some(&b)), 0.0);
        assert_eq!(cpu_percent(None, None), 0.0);
    }
}

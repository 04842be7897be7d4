//! Gauges read from berthd's own state at scrape time: pods and containers by
//! state, live monitors, and the image store. Derived on each scrape from the
//! same records the RPCs serve, so they cannot drift from them; nothing is
//! counted twice on the RPC path.

use std::sync::{Arc, OnceLock, Weak};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use crate::cri::lifecycle::Lifecycle;
use crate::state::{ContainerState, PodState};

/// The service the gauges are read from, once it has recovered.
static SOURCE: OnceLock<Weak<Lifecycle>> = OnceLock::new();

/// Makes `lc` the source of the scrape-time gauges (once per process).
pub(crate) fn attach(lc: &Arc<Lifecycle>) {
    let _ = SOURCE.set(Arc::downgrade(lc));
}

const POD_STATES: [(PodState, &str); 3] = [
    (PodState::Creating, "creating"),
    (PodState::Ready, "ready"),
    (PodState::NotReady, "notready"),
];

const CONTAINER_STATES: [(ContainerState, &str); 5] = [
    (ContainerState::Creating, "creating"),
    (ContainerState::Created, "created"),
    (ContainerState::Running, "running"),
    (ContainerState::Exited, "exited"),
    (ContainerState::Unknown, "unknown"),
];

/// Counts read from a [`Lifecycle`].
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub pods: [u64; POD_STATES.len()],
    pub containers: [u64; CONTAINER_STATES.len()],
    pub monitors_alive: u64,
    pub images: u64,
    pub image_bytes: u64,
    pub pull_bytes: u64,
}

impl Counts {
    /// Reads every count; touches the disk (monitor state files, the image
    /// table), so it runs off the async threads.
    pub(crate) fn read(lc: &Lifecycle) -> Counts {
        let mut c = Counts::default();
        for p in lc.pods.records() {
            if let Some(i) = POD_STATES.iter().position(|(s, _)| *s == p.state) {
                c.pods[i] += 1;
            }
        }
        for r in lc.containers.records() {
            if let Some(i) = CONTAINER_STATES.iter().position(|(s, _)| *s == r.state) {
                c.containers[i] += 1;
            }
            if monitor_alive(&r.state_dir) {
                c.monitors_alive += 1;
            }
        }
        if let Ok(images) = lc.images.list() {
            c.images = images.len() as u64;
            c.image_bytes = images.iter().map(|i| i.size).sum();
        }
        c.pull_bytes = lc.images.stats().bytes_downloaded;
        c
    }
}

/// Whether the `berth-monitor` recorded in a container's state dir still runs
/// (pid plus start time, so a reused pid does not count).
fn monitor_alive(state_dir: &std::path::Path) -> bool {
    match berth_runtime::Container::load(state_dir) {
        Ok(c) => {
            let f = c.state_file();
            f.monitor_pid > 0
                && berth_runtime::container::state::is_alive(f.monitor_pid, f.monitor_start_time)
        }
        Err(_) => false,
    }
}

/// Encodes [`Counts`] of the attached service; nothing before recovery.
#[derive(Debug)]
pub struct ObjectsCollector;

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: u64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
    g.encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

impl Collector for ObjectsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(lc) = SOURCE.get().and_then(Weak::upgrade) else {
            return Ok(());
        };
        let c = Counts::read(&lc);
        {
            let mut f = encoder.encode_descriptor(
                "berth_pods",
                "Pod sandboxes, by state.",
                None,
                MetricType::Gauge,
            )?;
            for ((_, name), n) in POD_STATES.iter().zip(c.pods) {
                ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX))
                    .encode(f.encode_family(&[("state", *name)])?)?;
            }
        }
        {
            let mut f = encoder.encode_descriptor(
                "berth_containers",
                "Containers, by state.",
                None,
                MetricType::Gauge,
            )?;
            for ((_, name), n) in CONTAINER_STATES.iter().zip(c.containers) {
                ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX))
                    .encode(f.encode_family(&[("state", *name)])?)?;
            }
        }
        gauge(
            &mut encoder,
            "berth_monitors_alive",
            "berth-monitor processes alive (one per container whose process has not been reaped); should equal created plus running containers.",
            c.monitors_alive,
        )?;
        gauge(
            &mut encoder,
            "berth_images",
            "Images in the image store.",
            c.images,
        )?;
        gauge(
            &mut encoder,
            "berth_image_bytes",
            "Bytes of the images in the store (manifests, configs and compressed layers).",
            c.image_bytes,
        )?;
        ConstCounter::new(c.pull_bytes).encode(encoder.encode_descriptor(
            "berth_image_pull_bytes",
            "Layer bytes downloaded from registries.",
            None,
            MetricType::Counter,
        )?)
    }
}

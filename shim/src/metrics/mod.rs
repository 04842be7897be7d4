//! Prometheus metrics: what berthd counts, and the opt-in HTTP endpoint that
//! serves them (`[metrics] address`; `GET /metrics` and `GET /healthz`).
//!
//! Built on `prometheus-client`, the Prometheus project's own Rust client:
//! it encodes both the Prometheus text format (0.0.4) and OpenMetrics, has a
//! registry that takes scrape-time collectors (for values derived from the
//! store rather than kept in step with it), and pulls in no HTTP stack of its
//! own, so the endpoint runs on the hyper that the streaming server already
//! uses. Not the `prometheus` crate (no OpenMetrics, protobuf baggage), not
//! `metrics` + `metrics-exporter-prometheus` (a facade plus a second exporter
//! stack, text format only).
//!
//! Cost on the hot paths: the RPC boundary records into fixed tables of
//! atomics ([`rpc`]), and [`histogram::LatencyHistogram`] replaces the
//! client's mutex-guarded histogram, so a call adds three relaxed atomic
//! adds. Counters and gauges are the client's own (one atomic each).
//! Counting is always on; only the endpoint is opt-in. Pods and containers by
//! state, live monitors and the image store are read at scrape time
//! ([`objects`]), never stored twice.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub mod histogram;
mod http;
pub(crate) mod objects;
mod process;
pub mod rpc;

pub use histogram::LatencyHistogram;
pub use http::{serve, served_at, start, MetricsServer};

/// `[metrics]` in config.toml.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// `host:port` to serve `/metrics` and `/healthz` on (plain HTTP); empty:
    /// no endpoint. Port 0 picks a free port (`berth info` shows which).
    pub address: String,
}

impl MetricsConfig {
    /// Checks that `address` is empty or a socket address.
    pub fn validate(&self) -> Result<()> {
        if !self.address.is_empty() && self.address.parse::<std::net::SocketAddr>().is_err() {
            return Err(Error::InvalidArgument(format!(
                "config metrics.address: {:?} is not host:port (e.g. 127.0.0.1:9898)",
                self.address
            )));
        }
        Ok(())
    }
}

/// Whether the CRI server takes calls, as `/healthz` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Health {
    /// Opening stores and recovering: RPCs get UNAVAILABLE.
    Starting = 0,
    /// Serving the CRI.
    Serving = 1,
    /// Shutting down: draining in-flight calls.
    Draining = 2,
}

/// Labels of a counter or gauge with one label.
type One = [(&'static str, &'static str); 1];
/// `op` and `plugin` of a CNI plugin call.
type CniLabels = [(&'static str, String); 2];

/// Everything berthd counts outside the RPC table; one per process ([`global`]).
#[derive(Debug)]
pub struct Metrics {
    health: AtomicU8,
    /// Successful PullImage calls.
    pub pulls: Counter,
    /// Time successful pulls took.
    pub pull_duration: LatencyHistogram,
    /// Failed pulls by reason.
    pub pull_failures: Family<One, Counter>,
    /// CNI plugin calls by command and plugin type.
    pub cni_duration: Family<CniLabels, LatencyHistogram>,
    /// Failed CNI plugin calls by command and plugin type.
    pub cni_failures: Family<CniLabels, Counter>,
    /// Image garbage collection runs.
    pub gc_runs: Counter,
    /// Bytes image garbage collection gave back.
    pub gc_freed_bytes: Counter,
    /// Streaming (exec/attach/port-forward) connections open now.
    pub streaming_sessions: Gauge,
    /// Streaming wire bytes by direction (`in`: from the client).
    pub streaming_bytes: Family<One, Counter>,
    /// What the last start-up recovery found.
    recovered: Family<One, Gauge>,
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
        health: AtomicU8::new(Health::Starting as u8),
        pulls: Counter::default(),
        pull_duration: LatencyHistogram::default(),
        pull_failures: Family::default(),
        cni_duration: Family::default(),
        cni_failures: Family::default(),
        gc_runs: Counter::default(),
        gc_freed_bytes: Counter::default(),
        streaming_sessions: Gauge::default(),
        streaming_bytes: Family::default(),
        recovered: Family::default(),
    });
    &METRICS
}

impl Metrics {
    /// Sets what `/healthz` answers.
    pub fn set_health(&self, h: Health) {
        self.health.store(h as u8, Ordering::Release);
    }

    /// What `/healthz` answers.
    pub fn health(&self) -> Health {
        match self.health.load(Ordering::Acquire) {
            1 => Health::Serving,
            2 => Health::Draining,
            _ => Health::Starting,
        }
    }

    /// Records the outcome of one image pull.
    pub fn pull_done<T>(&self, result: &Result<T>, elapsed: Duration) {
        match result {
            Ok(_) => {
                self.pulls.inc();
                self.pull_duration.observe(elapsed);
            }
            Err(e) => {
                self.pull_failures
                    .get_or_create(&[("reason", failure_reason(e))])
                    .inc();
            }
        }
    }

    /// Records one CNI plugin call (`op` is ADD, DEL or CHECK).
    pub fn cni_call<T>(
        &self,
        op: &'static str,
        plugin: &str,
        result: &Result<T>,
        elapsed: Duration,
    ) {
        let labels = [("op", op.to_string()), ("plugin", plugin.to_string())];
        self.cni_duration.get_or_create(&labels).observe(elapsed);
        if result.is_err() {
            self.cni_failures.get_or_create(&labels).inc();
        }
    }

    /// Records streaming traffic (`inbound`: read from the client).
    pub fn streaming_traffic(&self, inbound: bool, bytes: usize) {
        let dir = if inbound { "in" } else { "out" };
        self.streaming_bytes
            .get_or_create(&[("direction", dir)])
            .inc_by(bytes as u64);
    }

    /// Records what start-up recovery found.
    pub(crate) fn recovered(&self, pods: usize, containers: usize, exited_while_down: usize) {
        for (what, n) in [
            ("pods", pods),
            ("containers", containers),
            ("exited_while_down", exited_while_down),
        ] {
            self.recovered
                .get_or_create(&[("object", what)])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// A registry holding every metric, for one scrape.
    fn registry(&self) -> Registry {
        let mut r = Registry::default();
        r.register(
            "berth_build",
            "Version and git commit of the running berthd.",
            Info::new([
                ("version", env!("CARGO_PKG_VERSION")),
                (
                    "commit",
                    option_env!("BERTH_GIT_COMMIT").unwrap_or("unknown"),
                ),
            ]),
        );
        r.register_collector(Box::new(rpc::RpcCollector));
        r.register(
            "berth_image_pulls",
            "Images pulled successfully.",
            self.pulls.clone(),
        );
        r.register(
            "berth_image_pull_duration_seconds",
            "Time successful image pulls took.",
            self.pull_duration.clone(),
        );
        r.register(
            "berth_image_pull_failures",
            "Failed image pulls, by reason.",
            self.pull_failures.clone(),
        );
        r.register(
            "berth_cni_plugin_duration_seconds",
            "Time CNI plugin calls took, by command (ADD, DEL, CHECK) and plugin type.",
            self.cni_duration.clone(),
        );
        r.register(
            "berth_cni_plugin_failures",
            "Failed CNI plugin calls, by command and plugin type.",
            self.cni_failures.clone(),
        );
        r.register(
            "berth_image_gc_runs",
            "Image garbage collection runs.",
            self.gc_runs.clone(),
        );
        r.register(
            "berth_image_gc_freed_bytes",
            "Bytes of blobs and snapshots image garbage collection deleted.",
            self.gc_freed_bytes.clone(),
        );
        r.register(
            "berth_streaming_sessions",
            "Exec, attach and port-forward connections open on the streaming server.",
            self.streaming_sessions.clone(),
        );
        r.register(
            "berth_streaming_bytes",
            "Bytes on streaming connections, by direction (in: from the client).",
            self.streaming_bytes.clone(),
        );
        r.register(
            "berth_recovered",
            "What recovery found when this berthd started: pods and containers picked up, containers that exited while berthd was down.",
            self.recovered.clone(),
        );
        r.register_collector(Box::new(objects::ObjectsCollector));
        r.register_collector(Box::new(process::ProcessCollector));
        r
    }

    /// The Prometheus text format (0.0.4).
    pub fn encode_text(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry());
        out
    }

    /// OpenMetrics text (1.0).
    pub fn encode_openmetrics(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry());
        out
    }
}

/// A short, bounded label value for why an operation failed.
pub fn failure_reason(e: &Error) -> &'static str {
    match e {
        Error::InvalidArgument(_) => "invalid_argument",
        Error::NotFound(_) => "not_found",
        Error::AlreadyExists(_) => "already_exists",
        Error::FailedPrecondition(_) => "failed_precondition",
        Error::Unimplemented(_) => "unimplemented",
        Error::DeadlineExceeded(_) => "timeout",
        Error::Unauthenticated(_) => "unauthenticated",
        Error::PermissionDenied(_) => "permission_denied",
        Error::Unavailable(_) => "unavailable",
        Error::Io { .. } => "io",
        Error::Store(_) => "store",
        Error::Runtime(_) => "runtime",
        // Internal, and any variant added later.
        _ => "internal",
    }
}

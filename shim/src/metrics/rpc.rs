//! Per-RPC request counts (by method and gRPC code) and latency histograms (by
//! method). The tables are plain `static` arrays of atomics indexed by a
//! method number that [`method_index`] computes at compile time from the name
//! the boundary passes, so recording a call is three relaxed atomic adds: no
//! label hashing, no lock, no allocation. Series appear once a method has been
//! called (and a code once it has been returned), as in grpc-go's interceptors.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use super::histogram::Slots;

/// Every CRI RPC berthd serves, RuntimeService then ImageService.
pub const METHODS: [&str; 41] = berth_proto::RPCS;

/// gRPC code names as grpc-go spells them (`codes.Code.String()`), the
/// spelling of `grpc_code` in the dashboards operators already have.
const CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// The index of `name` in [`METHODS`]; evaluated in a `const`, so a name
/// that is not there fails the build instead of going uncounted.
pub const fn method_index(name: &str) -> usize {
    let mut i = 0;
    while i < METHODS.len() {
        if str_eq(METHODS[i], name) {
            return i;
        }
        i += 1;
    }
    panic!("RPC name missing from metrics::rpc::METHODS")
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The counters and histograms of every method.
#[derive(Debug)]
pub struct RpcTable {
    calls: [[AtomicU64; CODES.len()]; METHODS.len()],
    latency: [Slots; METHODS.len()],
}

/// berthd's one table.
pub static RPCS: RpcTable = RpcTable::new();

impl RpcTable {
    const fn new() -> RpcTable {
        RpcTable {
            calls: [const { [const { AtomicU64::new(0) }; CODES.len()] }; METHODS.len()],
            latency: [const { Slots::new() }; METHODS.len()],
        }
    }

    /// Counts one call of method `method` (an index from [`method_index`])
    /// that ended with `code` after `elapsed`.
    pub fn record(&self, method: usize, code: tonic::Code, elapsed: Duration) {
        let code = (code as usize).min(CODES.len() - 1);
        self.calls[method][code].fetch_add(1, Ordering::Relaxed);
        self.latency[method].observe(elapsed);
    }
}

/// Encodes [`RPCS`] at scrape time.
#[derive(Debug)]
pub struct RpcCollector;

impl Collector for RpcCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let t = &RPCS;
        {
            let mut family = encoder.encode_descriptor(
                "berth_cri_requests",
                "CRI calls served, by method and gRPC status code.",
                None,
                MetricType::Counter,
            )?;
            for (m, name) in METHODS.iter().enumerate() {
                for (c, code) in CODES.iter().enumerate() {
                    let n = t.calls[m][c].load(Ordering::Relaxed);
                    if n > 0 {
                        let labels = [("method", *name), ("code", *code)];
                        family
                            .encode_family(&labels)?
                            .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
                    }
                }
            }
        }
        let mut family = encoder.encode_descriptor(
            "berth_cri_request_duration_seconds",
            "Time berthd took to answer CRI calls, by method (for streaming calls: to open the stream).",
            None,
            MetricType::Histogram,
        )?;
        for (m, name) in METHODS.iter().enumerate() {
            if t.latency[m].count() > 0 {
                t.latency[m].encode(family.encode_family(&[("method", *name)])?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_index_finds_every_name_and_names_are_unique() {
        for (i, m) in METHODS.iter().enumerate() {
            assert_eq!(method_index(m), i, "{m}");
        }
        const PULL: usize = method_index("PullImage");
        assert_eq!(METHODS[PULL], "PullImage");
    }

    #[test]
    fn code_names_follow_tonic_code_numbers() {
        assert_eq!(CODES[tonic::Code::Ok as usize], "OK");
        assert_eq!(CODES[tonic::Code::NotFound as usize], "NotFound");
        assert_eq!(
            CODES[tonic::Code::Unauthenticated as usize],
            "Unauthenticated"
        );
        assert_eq!(CODES[tonic::Code::Unavailable as usize], "Unavailable");
    }
}

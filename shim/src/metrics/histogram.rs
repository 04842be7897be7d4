//! A latency histogram whose `observe` is two relaxed atomic adds: one on the
//! bucket the value falls in, one on the sum. prometheus-client's own
//! `Histogram` takes a mutex per observation, which the RPC path must not.
//! Buckets are kept non-cumulative (the encoders accumulate them), and the
//! count is their sum, so it always agrees with the `+Inf` bucket.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Upper bounds in nanoseconds, 100 µs to 60 s: a Version call takes tens of
/// microseconds, a cold pull of a large image or a slow CNI plugin minutes.
/// Integers, so the hot path compares integers and `le` is exact.
const BOUNDS_NS: [u64; 18] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
    60_000_000_000,
];

/// The shared state: one slot per bucket plus the overflow (`+Inf`) slot.
#[derive(Debug, Default)]
pub struct Slots {
    buckets: [AtomicU64; 19],
    sum_ns: AtomicU64,
}

impl Slots {
    /// An empty histogram; `const` so a table of them can be a plain `static`.
    pub const fn new() -> Slots {
        Slots {
            buckets: [const { AtomicU64::new(0) }; 19],
            sum_ns: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        // Values are spread over 18 bounds: a linear scan of a cache line or
        // two beats a binary search's branches at this size.
        let i = BOUNDS_NS
            .iter()
            .position(|&b| ns <= b)
            .unwrap_or(BOUNDS_NS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// `(sum in seconds, count, per-bucket counts)` as prometheus-client's
    /// encoders want them: each bucket's own count, which they accumulate
    /// into the cumulative `le` series themselves.
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut count = 0;
        let mut out = Vec::with_capacity(BOUNDS_NS.len() + 1);
        for (i, b) in self.buckets.iter().enumerate() {
            let n = b.load(Ordering::Relaxed);
            count += n;
            let le = BOUNDS_NS
                .get(i)
                .map_or(f64::INFINITY, |&ns| ns as f64 / 1e9);
            out.push((le, n));
        }
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        (sum, count, out)
    }

    /// Writes this histogram through a prometheus-client encoder.
    pub fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.snapshot();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }
}

/// A cloneable handle on [`Slots`], usable as a registered metric or inside a
/// `Family`.
#[derive(Debug, Clone, Default)]
pub struct LatencyHistogram(Arc<Slots>);

impl LatencyHistogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        self.0.observe(d)
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.0.count()
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let s = Slots::default();
        s.observe(Duration::from_micros(50)); // <= 100 µs
        s.observe(Duration::from_micros(100)); // == bound: same bucket (le is inclusive)
        s.observe(Duration::from_millis(3)); // <= 5 ms
        s.observe(Duration::from_secs(120)); // past 60 s: +Inf only
        let (sum, count, b) = s.snapshot();
        assert_eq!(count, 4);
        assert_eq!(b.len(), 19);
        assert_eq!(b[0], (0.0001, 2));
        assert_eq!(b[4], (0.0025, 0));
        assert_eq!(b[5], (0.005, 1));
        assert_eq!(b[17], (60.0, 0));
        assert_eq!(b[18], (f64::INFINITY, 1));
        assert_eq!(b.iter().map(|(_, n)| n).sum::<u64>(), 4);
        assert!((sum - 120.00315).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn encoded_buckets_are_cumulative_and_end_at_the_count() {
        let h = LatencyHistogram::default();
        for us in [50, 300, 300] {
            h.observe(Duration::from_micros(us));
        }
        let mut r = prometheus_client::registry::Registry::default();
        r.register("t_seconds", "test", h.clone());
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &r).unwrap();
        for line in [
            "t_seconds_bucket{le=\"0.0001\"} 1",
            "t_seconds_bucket{le=\"0.00025\"} 1",
            "t_seconds_bucket{le=\"0.0005\"} 3",
            "t_seconds_bucket{le=\"60\"} 3",
            "t_seconds_bucket{le=\"+Inf\"} 3",
            "t_seconds_count 3",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }

    #[test]
    fn bounds_ascend_from_100us_to_60s() {
        assert_eq!(BOUNDS_NS[0], 100_000);
        assert_eq!(BOUNDS_NS[17], 60_000_000_000);
        assert!(BOUNDS_NS.windows(2).all(|w| w[0] < w[1]));
    }
}

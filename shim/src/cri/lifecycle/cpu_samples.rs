//! The previous CPU sample of each container: `usage_nano_cores` is a rate.

use std::collections::HashMap;
use std::sync::Mutex;

/// Last CPU sample per container: (unix nanos, cumulative cpu nanos).
#[derive(Default)]
pub(crate) struct CpuSamples(Mutex<HashMap<String, (i64, u64)>>);

impl CpuSamples {
    /// Records a sample and returns the rate since the previous one, in nano-cores.
    pub(crate) fn rate(&self, id: &str, at: i64, cpu_ns: u64) -> Option<u64> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let prev = m.insert(id.to_string(), (at, cpu_ns));
        let (t0, c0) = prev?;
        let dt = u128::try_from(at.checked_sub(t0).filter(|d| *d > 0)?).ok()?;
        let dc = cpu_ns.checked_sub(c0)? as u128;
        u64::try_from(dc * 1_000_000_000 / dt).ok()
    }

    /// Forgets containers that are gone.
    pub(crate) fn retain(&self, live: &[String]) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|k, _| live.contains(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_rate_needs_two_samples_and_is_in_nano_cores() {
        let s = CpuSamples::default();
        assert_eq!(s.rate("a", 1_000_000_000, 0), None);
        // Half a core over one second.
        assert_eq!(s.rate("a", 2_000_000_000, 500_000_000), Some(500_000_000));
        // A counter that went backwards (new cgroup) gives no rate.
        assert_eq!(s.rate("a", 3_000_000_000, 10), None);
        s.retain(&[]);
        assert_eq!(s.rate("a", 4_000_000_000, 20), None);
    }
}

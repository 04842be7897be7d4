//! The `process_*` metrics every Prometheus client exports (names as in the
//! Go and Python clients), read from `/proc/self` at scrape time.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

/// One reading of this process.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct ProcessStats {
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub open_fds: u64,
    pub max_fds: u64,
    pub threads: u64,
    pub cpu_seconds: f64,
    pub start_time_seconds: f64,
}

impl ProcessStats {
    /// Reads `/proc/self`; fields it cannot read stay 0.
    pub(crate) fn read() -> ProcessStats {
        let mut s = ProcessStats::default();
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .and_then(|p| u64::try_from(p).ok())
            .unwrap_or(4096);
        let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .unwrap_or(100) as f64;
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            if let Some(f) = stat_fields(&stat) {
                // Fields counted from 1 as in proc(5); `f[0]` is field 3 (state).
                let at = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
                s.cpu_seconds = (at(14).unwrap_or(0) + at(15).unwrap_or(0)) as f64 / ticks;
                s.threads = at(20).unwrap_or(0);
                s.virtual_bytes = at(23).unwrap_or(0);
                s.resident_bytes = at(24).unwrap_or(0) * page;
                if let Some(boot) = boot_time() {
                    s.start_time_seconds = boot + at(22).unwrap_or(0) as f64 / ticks;
                }
            }
        }
        if let Ok(d) = std::fs::read_dir("/proc/self/fd") {
            // Minus the descriptor read_dir itself holds open.
            s.open_fds = (d.count() as u64).saturating_sub(1);
        }
        if let Ok((soft, _)) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        {
            s.max_fds = soft;
        }
        s
    }
}

/// Fields 3.. of `/proc/<pid>/stat`: after the `)` closing the command name,
/// which may itself hold spaces and parentheses.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().collect())
}

/// Boot time in unix seconds (`btime` of `/proc/stat`).
fn boot_time() -> Option<f64> {
    std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// Encodes a fresh [`ProcessStats`] on each scrape.
#[derive(Debug)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = ProcessStats::read();
        for (name, help, v) in [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                s.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                s.virtual_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                s.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                s.max_fds,
            ),
            ("process_threads", "Number of OS threads.", s.threads),
        ] {
            ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX))
                .encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)?;
        }
        ConstGauge::new(s.start_time_seconds).encode(encoder.encode_descriptor(
            "process_start_time_seconds",
            "Start time of the process since the unix epoch in seconds.",
            None,
            MetricType::Gauge,
        )?)?;
        ConstCounter::new(s.cpu_seconds).encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            None,
            MetricType::Counter,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_survive_a_command_name_with_spaces_and_parens() {
        let stat = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 5 0 1234 1000 25";
        let f = stat_fields(stat).unwrap();
        assert_eq!(f[0], "S");
        assert_eq!(f[20 - 3], "5"); // num_threads
        assert_eq!(f[24 - 3], "25"); // rss pages
    }

    #[test]
    fn this_process_is_read_from_proc() {
        let s = ProcessStats::read();
        assert!(
            s.resident_bytes > 0 && s.open_fds > 0 && s.threads >= 1,
            "{s:?}"
        );
        assert!(
            s.max_fds >= s.open_fds && s.start_time_seconds > 1e9,
            "{s:?}"
        );
    }
}

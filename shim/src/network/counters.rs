//! Byte and error counters of a pod's interfaces, as the pod sees them.
//!
//! `/proc/<pid>/net/dev` shows the namespace of that task, and sysfs shows the
//! namespace of whoever mounted it, so berthd reads `/proc/thread-self/net/dev`
//! from a short-lived std thread that first joined the pod's pinned network
//! namespace (`setns`, nix's safe wrapper). The namespace is per thread: the
//! thread exits afterwards and never returns to tokio's pools in a foreign
//! namespace, and nothing is forked (the pattern of `streaming::netns`).

use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;

use crate::error::{Error, Result};

/// Cumulative counters of one interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceCounters {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_errors: u64,
    pub tx_bytes: u64,
    pub tx_errors: u64,
}

/// Parses `/proc/net/dev`: two header lines, then
/// `name: rx_bytes packets errs drop fifo frame compressed multicast tx_bytes packets errs …`.
pub fn parse_net_dev(text: &str) -> Vec<InterfaceCounters> {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let v: Vec<u64> = rest
                .split_whitespace()
                .map(|f| f.parse().ok())
                .collect::<Option<_>>()?;
            if v.len() < 11 {
                return None;
            }
            Some(InterfaceCounters {
                name: name.trim().to_string(),
                rx_bytes: v[0],
                rx_errors: v[2],
                tx_bytes: v[8],
                tx_errors: v[10],
            })
        })
        .collect()
}

fn read_in_netns(netns: &Path) -> Result<Vec<InterfaceCounters>> {
    let ns = std::fs::File::open(netns).map_err(Error::io("open network namespace", netns))?;
    nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|e| {
        Error::Runtime(format!(
            "network stats: enter network namespace {}: {e}",
            netns.display()
        ))
    })?;
    let dev = Path::new("/proc/thread-self/net/dev");
    let text = std::fs::read_to_string(dev).map_err(Error::io("read interface counters", dev))?;
    Ok(parse_net_dev(&text))
}

/// Counters of every interface in the network namespace pinned at `netns`.
pub async fn interface_counters(netns: impl Into<PathBuf>) -> Result<Vec<InterfaceCounters>> {
    let netns = netns.into();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("berth-netns-stats".into())
        .spawn(move || {
            let _ = tx.send(read_in_netns(&netns));
        })
        .map_err(|e| Error::Internal(format!("network stats: spawn thread: {e}")))?;
    rx.await
        .map_err(|_| Error::Internal("network stats: reader thread died".into()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     140       2    0    0    0     0          0         0      140       2    0    0    0     0       0          0
  eth0:   98765     120    3    0    0     0          0         0    43210      80    1    0    0     0       0          0
";

    #[test]
    fn net_dev_columns_map_to_bytes_and_errors() {
        let got = parse_net_dev(SAMPLE);
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[1],
            InterfaceCounters {
                name: "eth0".into(),
                rx_bytes: 98765,
                rx_errors: 3,
                tx_bytes: 43210,
                tx_errors: 1,
            }
        );
        assert_eq!(got[0].name, "lo");
        assert!(parse_net_dev("h1\nh2\nbroken line\n  x: 1 2\n").is_empty());
    }

    #[tokio::test]
    async fn a_missing_namespace_pin_is_not_found() {
        let err = interface_counters("/nonexistent/berth/netns")
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/berth/netns"),
            "{err}"
        );
    }
}

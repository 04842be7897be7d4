//! A CNI bridge network private to one test (Debian's bridge + host-local
//! plugins), for tests that need pods with real addresses.
//!
//! Safety: every test bridge gets an iptables rule that drops forwarded
//! traffic leaving it, so pods can reach only each other and the host; tests
//! send traffic only to the pods they made and to loopback. Dropping the
//! [`TestBridge`] removes the rule and the bridge.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::error::{Error, Result};

/// Where Debian's containernetworking-plugins put the plugins.
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";

/// `Some(reason)` when the CNI reference plugins are not installed.
pub fn unavailable_reason() -> Option<String> {
    (!Path::new(CNI_BIN_DIR).join("bridge").exists())
        .then(|| format!("containernetworking-plugins not installed ({CNI_BIN_DIR}/bridge)"))
}

/// GETs `path` from `addr` (a server in a pod, or its host port) with a
/// plain HTTP/1.0 request, retrying while the server starts (20 s); returns
/// the whole response, status line and headers included, once it is a 200.
pub fn http_get(addr: &str, path: &str) -> Vec<u8> {
    let what = format!("GET {addr}{path} to answer 200");
    crate::wait::until_blocking(&what, Duration::from_secs(20), || {
        let mut s = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())?;
        let mut out = Vec::new();
        s.read_to_end(&mut out)?;
        if out.starts_with(b"HTTP/1.0 200") || out.starts_with(b"HTTP/1.1 200") {
            Ok(out)
        } else {
            let head = String::from_utf8_lossy(&out[..out.len().min(200)]).into_owned();
            Err(std::io::Error::other(head))
        }
    })
}

/// One test's bridge, subnet, host-local data dir and iptables guard.
#[derive(Debug)]
pub struct TestBridge {
    pub bridge: String,
    /// The first three octets of the /24 the pods get, e.g. `10.251.7`.
    pub subnet_prefix: String,
    ipam_dir: tempfile::TempDir,
    rule: Vec<String>,
}

impl TestBridge {
    /// A new bridge name and subnet, unique per test in this process and across
    /// concurrent test processes (two bridges with one subnet would make
    /// routing ambiguous), with its DROP rule installed.
    pub fn new() -> Result<TestBridge> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let n = (std::process::id() * 8 + k) % 250 + 2;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        // 10.251.x: clear of the 10.88.0.0/16 that CNI examples and
        // container runtimes' defaults use.
        let bridge = format!("bs{n}x{:x}", nanos % 0xfff);
        let subnet_prefix = format!("10.251.{n}");
        let rule: Vec<String> = ["FORWARD", "-i", &bridge, "!", "-o", &bridge, "-j", "DROP"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut args = vec!["-I".to_string()];
        args.extend(rule.iter().cloned());
        let st = Command::new("iptables")
            .args(&args)
            .status()
            .map_err(Error::io("iptables"))?;
        if !st.success() {
            return Err(Error::Command {
                command: format!("iptables {}", args.join(" ")),
                message: st.to_string(),
            });
        }
        Ok(TestBridge {
            bridge,
            subnet_prefix,
            ipam_dir: tempfile::tempdir().map_err(Error::io("tempdir"))?,
            rule,
        })
    }

    /// The bridge plugin (with host-local IPAM) as a plugin list entry.
    pub fn bridge_plugin(&self) -> Value {
        json!({
            "type": "bridge",
            "bridge": self.bridge,
            "isGateway": true,
            "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": format!("{}.0/24", self.subnet_prefix)}]],
                "dataDir": self.ipam_dir.path(),
            }
        })
    }

    /// A conflist of the bridge followed by `more` plugins.
    pub fn conflist_with(&self, more: &[Value]) -> String {
        let mut plugins = vec![self.bridge_plugin()];
        plugins.extend(more.iter().cloned());
        json!({
            "cniVersion": "1.0.0",
            "name": format!("berth-e2e-{}", self.bridge),
            "plugins": plugins,
        })
        .to_string()
    }

    /// Writes [`TestBridge::conflist_with`] as the only config in `dir`.
    pub fn write_conf(&self, dir: &Path, more: &[Value]) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
        let file = dir.join("10-berth-e2e.conflist");
        std::fs::write(&file, self.conflist_with(more)).map_err(Error::io(&file))
    }

    /// The addresses host-local holds reserved on this network.
    pub fn allocations(&self) -> Vec<String> {
        let mut out = Vec::new();
        for net in std::fs::read_dir(self.ipam_dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            for f in std::fs::read_dir(net.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = f.file_name().to_string_lossy().to_string();
                if name.starts_with(&self.subnet_prefix) {
                    out.push(name);
                }
            }
        }
        out
    }

    /// veth interfaces attached to the bridge (`ip -o link` lines).
    pub fn veths(&self) -> Vec<String> {
        Command::new("ip")
            .args(["-o", "link", "show", "master", &self.bridge])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for TestBridge {
    fn drop(&mut self) {
        let mut args = vec!["-D".to_string()];
        args.extend(self.rule.iter().cloned());
        let _ = Command::new("iptables").args(&args).status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
    }
}

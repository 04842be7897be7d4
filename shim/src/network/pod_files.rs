//! The per-pod `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf` that every
//! container of the pod bind-mounts. Pod-network pods get a managed hosts file
//! naming their own address and a resolv.conf from the CRI `DNSConfig`;
//! host-network pods see the node's files, as kubelet expects.
//!
//! Files are written once, before any container starts, each atomically
//! (temp + rename): a later rewrite would not reach an existing bind mount.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::types::DnsSettings;
use crate::error::{Error, Result};

const HOST_HOSTS: &str = "/etc/hosts";
const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";
/// kubelet's limit on search domains.
const MAX_SEARCHES: usize = 32;

/// Where the three files were written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFiles {
    /// `<dir>/hostname`.
    pub hostname: PathBuf,
    /// `<dir>/hosts`.
    pub hosts: PathBuf,
    /// `<dir>/resolv.conf`.
    pub resolv_conf: PathBuf,
}

/// Writes `hostname`, `hosts` and `resolv.conf` into `dir` (created if needed).
/// `ip` is the pod's primary address (none for host network or when unknown).
/// An empty `dns` means the node's resolv.conf.
pub fn write_pod_files(
    dir: &Path,
    hostname: &str,
    ip: Option<&str>,
    dns: &DnsSettings,
    host_network: bool,
) -> Result<PodFiles> {
    write_pod_files_from(
        dir,
        hostname,
        ip,
        dns,
        host_network,
        Path::new(HOST_HOSTS),
        Path::new(HOST_RESOLV_CONF),
    )
}

/// [`write_pod_files`] with the node's files at other paths (for tests).
fn write_pod_files_from(
    dir: &Path,
    hostname: &str,
    ip: Option<&str>,
    dns: &DnsSettings,
    host_network: bool,
    host_hosts: &Path,
    host_resolv: &Path,
) -> Result<PodFiles> {
    if hostname.is_empty()
        || hostname.len() > 253
        || hostname
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '#')
    {
        return Err(Error::InvalidArgument(format!(
            "hostname: {hostname:?} is not a host name"
        )));
    }
    let ip =
        match ip.filter(|s| !s.is_empty()) {
            Some(s) => Some(s.parse::<IpAddr>().map_err(|_| {
                Error::InvalidArgument(format!("pod ip: {s:?} is not an ip address"))
            })?),
            None => None,
        };
    let resolv = if dns.is_empty() {
        read_or_empty(host_resolv)?
    } else {
        resolv_conf(dns)?
    };
    let hosts = if host_network {
        match std::fs::read(host_hosts) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => managed_hosts(hostname, ip),
            Err(e) => return Err(Error::io("read host hosts file", host_hosts)(e)),
        }
    } else {
        managed_hosts(hostname, ip)
    };

    std::fs::create_dir_all(dir).map_err(Error::io("create pod files dir", dir))?;
    let files = PodFiles {
        hostname: dir.join("hostname"),
        hosts: dir.join("hosts"),
        resolv_conf: dir.join("resolv.conf"),
    };
    write_file(&files.hostname, format!("{hostname}\n").as_bytes())?;
    write_file(&files.hosts, &hosts)?;
    write_file(&files.resolv_conf, &resolv)?;
    Ok(files)
}

/// The hosts file kubelet manages for pod-network pods: loopback names, the
/// IPv6 well-known names, then the pod's own address.
fn managed_hosts(hostname: &str, ip: Option<IpAddr>) -> Vec<u8> {
    let mut s = String::from(
        "# Kubernetes-managed hosts file.\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    if let Some(ip) = ip {
        s.push_str(&format!("{ip}\t{hostname}\n"));
    }
    s.into_bytes()
}

fn resolv_conf(dns: &DnsSettings) -> Result<Vec<u8>> {
    let mut s = String::new();
    for (i, server) in dns.servers.iter().enumerate() {
        if server.parse::<IpAddr>().is_err() {
            return Err(Error::InvalidArgument(format!(
                "dns_config.servers[{i}]: {server:?} is not an ip address"
            )));
        }
        s.push_str(&format!("nameserver {server}\n"));
    }
    if dns.searches.len() > MAX_SEARCHES {
        return Err(Error::InvalidArgument(format!(
            "dns_config.searches: {} domains, at most {MAX_SEARCHES} allowed",
            dns.searches.len()
        )));
    }
    for (field, list) in [("searches", &dns.searches), ("options", &dns.options)] {
        if let Some((i, bad)) = list
            .iter()
            .enumerate()
            .find(|(_, v)| v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(Error::InvalidArgument(format!(
                "dns_config.{field}[{i}]: {bad:?} is empty or has blanks"
            )));
        }
    }
    if !dns.searches.is_empty() {
        s.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    if !dns.options.is_empty() {
        s.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    Ok(s.into_bytes())
}

fn read_or_empty(p: &Path) -> Result<Vec<u8>> {
    match std::fs::read(p) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io("read host resolv.conf", p)(e)),
    }
}

fn write_file(dest: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = dest.parent().unwrap_or(Path::new("."));
    let mut tmp =
        tempfile::NamedTempFile::new_in(dir).map_err(Error::io("create temp file", dir))?;
    tmp.write_all(bytes)
        .and_then(|()| {
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))
        })
        .map_err(Error::io("write", dest))?;
    // Renamed into place, so a reader never sees half a file; not fsynced:
    // pod files live in the state dir, which a reboot clears along with
    // the pods (as `/run` does), so durability would buy nothing.
    tmp.persist(dest)
        .map_err(|e| Error::io("rename", dest)(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap()
    }

    #[test]
    fn pod_network_files() {
        let dir = tempfile::tempdir().unwrap();
        let dns = DnsSettings {
            servers: vec!["10.96.0.10".into(), "fd00::a".into()],
            searches: vec![
                "default.svc.cluster.local".into(),
                "svc.cluster.local".into(),
            ],
            options: vec!["ndots:5".into(), "edns0".into()],
        };
        let out = dir.path().join("pod1");
        let f = write_pod_files(&out, "web-0", Some("10.250.1.5"), &dns, false).unwrap();
        assert_eq!(f.hostname, out.join("hostname"));
        assert_eq!(read(&f.hostname), "web-0\n");
        let hosts = read(&f.hosts);
        assert!(hosts.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"));
        assert!(hosts.contains("::1\tlocalhost ip6-localhost ip6-loopback\n"));
        assert!(
            hosts.ends_with("fe00::2\tip6-allrouters\n10.250.1.5\tweb-0\n"),
            "{hosts}"
        );
        assert_eq!(
            read(&f.resolv_conf),
            "nameserver 10.96.0.10\nnameserver fd00::a\n\
             search default.svc.cluster.local svc.cluster.local\noptions ndots:5 edns0\n"
        );
        let mode = std::fs::metadata(&f.hosts).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        assert_eq!(
            std::fs::read_dir(&out).unwrap().count(),
            3,
            "temp files left"
        );
    }

    #[test]
    fn host_network_and_empty_dns_use_the_nodes_files() {
        let dir = tempfile::tempdir().unwrap();
        let (hh, hr) = (dir.path().join("h"), dir.path().join("r"));
        std::fs::write(&hh, "127.0.0.1 localhost\n192.168.0.9 node1\n").unwrap();
        std::fs::write(&hr, "nameserver 192.168.0.1\n").unwrap();
        let out = dir.path().join("p");
        let f = write_pod_files_from(&out, "node1", None, &DnsSettings::default(), true, &hh, &hr)
            .unwrap();
        assert_eq!(read(&f.hosts), "127.0.0.1 localhost\n192.168.0.9 node1\n");
        assert_eq!(read(&f.resolv_conf), "nameserver 192.168.0.1\n");
        // A pod-network pod without DNSConfig still resolves like the node.
        let f = write_pod_files_from(
            &out,
            "p",
            Some("10.0.0.2"),
            &DnsSettings::default(),
            false,
            &hh,
            &hr,
        )
        .unwrap();
        assert!(read(&f.hosts).ends_with("10.0.0.2\tp\n"));
        assert_eq!(read(&f.resolv_conf), "nameserver 192.168.0.1\n");
        // A node without the files still gets working ones.
        let none = dir.path().join("none");
        let f = write_pod_files_from(&out, "p", None, &DnsSettings::default(), true, &none, &none)
            .unwrap();
        assert!(read(&f.hosts).contains("127.0.0.1\tlocalhost"));
        assert_eq!(read(&f.resolv_conf), "");
    }

    #[test]
    fn bad_input_is_refused_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("p");
        let ok = DnsSettings::default();
        write_pod_files(&out, "", None, &ok, false).unwrap_err();
        write_pod_files(&out, "a b", None, &ok, false).unwrap_err();
        write_pod_files(&out, "a", Some("10.0.0"), &ok, false).unwrap_err();
        let bad_server = DnsSettings {
            servers: vec!["dns.example".into()],
            ..Default::default()
        };
        let e = write_pod_files(&out, "a", None, &bad_server, false).unwrap_err();
        assert!(e.to_string().contains("servers[0]"), "{e}");
        let bad_search = DnsSettings {
            searches: vec!["a\nnameserver 1.2.3.4".into()],
            ..Default::default()
        };
        let e = write_pod_files(&out, "a", None, &bad_search, false).unwrap_err();
        assert!(e.to_string().contains("searches[0]"), "{e}");
        let many = DnsSettings {
            searches: (0..33).map(|i| format!("d{i}")).collect(),
            ..Default::default()
        };
        write_pod_files(&out, "a", None, &many, false).unwrap_err();
        assert!(!out.exists());
    }
}

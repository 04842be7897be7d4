//! [`Cni`]: ADD, DEL and CHECK of a pod against the configured network list,
//! plus the built-in loopback network every pod gets (as containerd does), the
//! result cache and the readiness condition.
//!
//! Invariants: a cache entry exists for every pod whose ADD succeeded and is
//! deleted only after its DEL succeeded; a failed ADD is undone (DEL of the
//! whole list) before the error is returned; calls for one pod are serialised.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, SystemTime};

use serde_json::{json, Map, Value};

use super::cache;
use super::conf::{self, Loaded, NetworkList};
use super::plugin::{self, Command, Invocation};
use super::result::pod_ips;
use super::types::{CniConfig, NetworkStatus, PodIps, PodNetwork};
use crate::error::{Error, Result};

/// The interface name every pod gets.
pub const POD_IFNAME: &str = "eth0";
const IFNAME: &str = POD_IFNAME;
/// The CRI reason for a network that is not ready, as kubelet expects it.
pub const NOT_READY_REASON: &str = "NetworkPluginNotReady";

/// The CNI front end of berthd; cheap to share (`Arc<Cni>`).
pub struct Cni {
    cfg: CniConfig,
    pod_cidrs: RwLock<Vec<String>>,
    loaded: Mutex<Option<Snapshot>>,
    pod_locks: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

// By hand: it holds handles (tasks, streams, callbacks, stores) with no useful
// Debug of their own.
impl std::fmt::Debug for Cni {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cni").finish_non_exhaustive()
    }
}

/// The last look at the config dir, valid while the dir and file are unchanged.
struct Snapshot {
    taken_at: SystemTime,
    dir_mtime: Option<SystemTime>,
    file_mtime: Option<SystemTime>,
    loaded: Loaded,
}

impl Cni {
    /// A CNI front end for `cfg`; nothing is read until first use.
    pub fn new(cfg: CniConfig) -> Self {
        Cni {
            cfg,
            pod_cidrs: RwLock::new(Vec::new()),
            loaded: Mutex::new(None),
            pod_locks: Mutex::new(HashMap::new()),
        }
    }

    /// The config this instance runs with.
    pub fn config(&self) -> &CniConfig {
        &self.cfg
    }

    /// The `NetworkReady` condition: false until a usable config exists in the
    /// config dir. Re-reads the dir only when its (or the config's) mtime changed.
    pub fn status(&self) -> NetworkStatus {
        let loaded = match self.load() {
            Loaded::Ready(net, file) => match self.missing_plugin(&net) {
                None => Loaded::Ready(net, file),
                Some(p) => Loaded::NotReady(format!(
                    "network {} ({}) needs plugin {p}, which is not in {}",
                    net.name,
                    file.display(),
                    self.cfg
                        .bin_dirs
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(":")
                )),
            },
            not_ready => not_ready,
        };
        match loaded {
            Loaded::Ready(..) => NetworkStatus {
                ready: true,
                reason: String::new(),
                message: String::new(),
            },
            Loaded::NotReady(msg) => NetworkStatus {
                ready: false,
                reason: NOT_READY_REASON.into(),
                message: format!("network plugin not ready: {msg}"),
            },
        }
    }

    /// The first plugin of `net` (or the built-in loopback) with no binary.
    fn missing_plugin(&self, net: &NetworkList) -> Option<String> {
        std::iter::once("loopback")
            .chain(net.plugins.iter().map(plugin_type))
            .find(|p| plugin::find(&self.cfg.bin_dirs, p).is_none())
            .map(String::from)
    }

    /// Records the node's pod CIDR(s) from UpdateRuntimeConfig (comma-separated
    /// for dual stack); offered to plugins as the `ipRanges` capability.
    pub fn set_pod_cidr(&self, cidr: &str) {
        let cidrs = cidr
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect();
        *self.pod_cidrs.write().unwrap_or_else(|e| e.into_inner()) = cidrs;
    }

    /// CNI ADD: gives the pod's network namespace its interfaces and returns its
    /// addresses. On failure everything the plugins did is undone first.
    #[tracing::instrument(skip_all, fields(pod_sandbox_id = %pod.pod_id))]
    pub async fn setup(&self, pod: &PodNetwork) -> Result<PodIps> {
        validate(pod)?;
        let _guard = self.lock_pod(&pod.pod_id).await;
        if !is_netns(&pod.netns) {
            return Err(Error::FailedPrecondition(format!(
                "pod {}: {} is not a network namespace (missing or not pinned)",
                pod.pod_id,
                pod.netns.display()
            )));
        }
        // A retried RunPodSandbox must not ADD twice: the second ADD would fail
        // (eth0 exists) and its undo would tear down the working network.
        if let Some((path, entry)) = cache::find(&self.cfg.cache_dir, &pod.pod_id)?
            .into_iter()
            .next()
        {
            return pod_ips(&entry.result)
                .map_err(|e| Error::Internal(format!("cni cache {}: {e}", path.display())));
        }
        let net = match self.load() {
            Loaded::Ready(net, _) => net,
            Loaded::NotReady(msg) => {
                return Err(Error::FailedPrecondition(format!(
                    "pod {}: network not ready: {msg}",
                    pod.pod_id
                )))
            }
        };
        let inv = self.invocation(pod, IFNAME, cni_args(pod), &pod.netns);
        let caps = self.capability_args(pod)?;
        self.loopback(&inv, &pod.netns, Command::Add).await?;

        let mut last: Option<Value> = None;
        let outcome = async {
            for p in &net.plugins {
                let out = run_one(&net, p, &inv, Command::Add, last.as_ref(), &caps).await?;
                let result: Value = serde_json::from_slice(&out).map_err(|e| {
                    Error::Internal(format!(
                        "cni plugin {} (network {}) ADD for pod {}: result is not json: {e}",
                        plugin_type(p),
                        net.name,
                        pod.pod_id
                    ))
                })?;
                last = Some(result);
            }
            // conf.rs refuses an empty plugin list; an error, not a panic, if that changes.
            let result = last.clone().ok_or_else(|| {
                Error::Internal(format!("cni network {} has no plugins", net.name))
            })?;
            let ips = pod_ips(&result).map_err(|e| {
                Error::Internal(format!("pod {} network {}: {e}", pod.pod_id, net.name))
            })?;
            let entry = cache::Entry::new(
                &pod.pod_id,
                IFNAME,
                &net.name,
                &inv.args,
                caps.clone(),
                net.raw.clone(),
                result,
            );
            cache::store(&self.cfg.cache_dir, &entry)?;
            Ok(ips)
        }
        .await;
        match outcome {
            Ok(ips) => Ok(ips),
            Err(e) => {
                tracing::warn!(pod_sandbox_id = %pod.pod_id, error = %e, "cni add failed, undoing");
                let undo = del_list(&net, &inv, &caps, prev_for_del(&net, last)).await;
                let _ = cache::remove(&cache::path(&self.cfg.cache_dir, &net.name, &pod.pod_id));
                match undo {
                    Ok(()) => Err(e),
                    Err(u) => Err(with_suffix(e, &format!("; undo failed: {u}"))),
                }
            }
        }
    }

    /// CNI DEL: releases what ADD set up, with the cached config, result and
    /// capability args when there are any (they survive restarts). Unknown pods
    /// and pods whose namespace is gone are fine; calling it twice is fine.
    #[tracing::instrument(skip_all, fields(pod_sandbox_id = %pod.pod_id))]
    pub async fn teardown(&self, pod: &PodNetwork) -> Result<()> {
        validate_id(&pod.pod_id)?;
        let _guard = self.lock_pod(&pod.pod_id).await;
        // Plugins treat an empty CNI_NETNS as "namespace gone, release addresses only".
        // A pin file whose mount is gone counts as gone too.
        let netns_alive = is_netns(&pod.netns);
        let netns: &Path = if netns_alive {
            &pod.netns
        } else {
            Path::new("")
        };
        let entries = cache::find(&self.cfg.cache_dir, &pod.pod_id)?;
        if entries.is_empty() {
            // ADD may have died before caching: DEL with today's config.
            if let Loaded::Ready(net, _) = self.load() {
                let inv = self.invocation(pod, IFNAME, cni_args(pod), netns);
                let caps = self.capability_args(pod).unwrap_or_default();
                del_list(&net, &inv, &caps, None).await?;
            }
        }
        for (path, entry) in entries {
            let net = NetworkList::from_value(entry.config.clone()).map_err(|e| {
                Error::Internal(format!("cni cache {}: config: {e}", path.display()))
            })?;
            let inv = self.invocation(pod, &entry.if_name, entry.cni_args.clone(), netns);
            let prev = prev_for_del(&net, Some(entry.result));
            del_list(&net, &inv, &entry.capability_args, prev).await?;
            cache::remove(&path)?;
        }
        if netns_alive {
            let inv = self.invocation(pod, IFNAME, cni_args(pod), netns);
            if plugin::find(&inv.bin_dirs, "loopback").is_some() {
                self.loopback(&inv, netns, Command::Del).await?;
            }
        }
        Ok(())
    }

    /// CNI CHECK against the cached result: errors if the pod's network is not
    /// what ADD made. Networks with `disableCheck` pass without running plugins.
    #[tracing::instrument(skip_all, fields(pod_sandbox_id = %pod.pod_id))]
    pub async fn check(&self, pod: &PodNetwork) -> Result<()> {
        validate_id(&pod.pod_id)?;
        let _guard = self.lock_pod(&pod.pod_id).await;
        let entries = cache::find(&self.cfg.cache_dir, &pod.pod_id)?;
        if entries.is_empty() {
            return Err(Error::NotFound(format!(
                "pod {}: no cni network was set up",
                pod.pod_id
            )));
        }
        if !is_netns(&pod.netns) {
            return Err(Error::FailedPrecondition(format!(
                "pod {}: {} is not a network namespace (missing or not pinned)",
                pod.pod_id,
                pod.netns.display()
            )));
        }
        for (path, entry) in entries {
            let net = NetworkList::from_value(entry.config.clone()).map_err(|e| {
                Error::Internal(format!("cni cache {}: config: {e}", path.display()))
            })?;
            if net.disable_check {
                continue;
            }
            if !net.at_least_0_4() {
                return Err(Error::FailedPrecondition(format!(
                    "pod {}: network {} has cniVersion {}, which has no CHECK",
                    pod.pod_id, net.name, net.cni_version
                )));
            }
            let inv = self.invocation(pod, &entry.if_name, entry.cni_args.clone(), &pod.netns);
            for p in &net.plugins {
                run_one(
                    &net,
                    p,
                    &inv,
                    Command::Check,
                    Some(&entry.result),
                    &entry.capability_args,
                )
                .await?;
            }
        }
        Ok(())
    }

    /// The addresses from the pod's cached ADD result, `None` if the pod has no
    /// network set up; lets PodSandboxStatus recover them after a restart.
    pub fn cached_ips(&self, pod_id: &str) -> Result<Option<PodIps>> {
        validate_id(pod_id)?;
        match cache::find(&self.cfg.cache_dir, pod_id)?.into_iter().next() {
            None => Ok(None),
            Some((path, entry)) => pod_ips(&entry.result)
                .map(Some)
                .map_err(|e| Error::Internal(format!("cni cache {}: {e}", path.display()))),
        }
    }

    /// The current network list, re-read when the config dir or file changed.
    fn load(&self) -> Loaded {
        let dir = &self.cfg.conf_dir;
        let dir_mtime = mtime(dir);
        let mut cached = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = cached.as_ref() {
            let file_mtime = match &s.loaded {
                Loaded::Ready(_, f) => mtime(f),
                Loaded::NotReady(_) => None,
            };
            // File-system timestamps are coarse: a change within the same tick
            // as the last read would keep the mtime, so only trust a snapshot
            // taken well after the last change (as git does with its index).
            let settled =
                |t: Option<SystemTime>| t.is_some_and(|t| s.taken_at >= t + Duration::from_secs(1));
            let file_settled = file_mtime.is_none() || settled(file_mtime);
            if s.dir_mtime == dir_mtime
                && s.file_mtime == file_mtime
                && settled(dir_mtime)
                && file_settled
            {
                return s.loaded.clone();
            }
        }
        let taken_at = SystemTime::now();
        let loaded = conf::load_dir(dir);
        let file_mtime = match &loaded {
            Loaded::Ready(_, f) => mtime(f),
            Loaded::NotReady(_) => None,
        };
        *cached = Some(Snapshot {
            taken_at,
            dir_mtime,
            file_mtime,
            loaded: loaded.clone(),
        });
        loaded
    }

    fn invocation(&self, pod: &PodNetwork, ifname: &str, args: String, netns: &Path) -> Invocation {
        Invocation {
            container_id: pod.pod_id.clone(),
            netns: netns.to_string_lossy().into_owned(),
            ifname: ifname.into(),
            args,
            bin_dirs: self.cfg.bin_dirs.clone(),
            timeout: Duration::from_secs(self.cfg.plugin_timeout_secs.max(1)),
        }
    }

    /// Every capability arg we can offer; each plugin gets the ones it declares.
    fn capability_args(&self, pod: &PodNetwork) -> Result<Map<String, Value>> {
        let mut caps = Map::new();
        let mut ports = Vec::new();
        for (i, pm) in pod.port_mappings.iter().enumerate() {
            // kubelet sends container ports without a host port too; those are
            // not forwarded.
            if pm.host_port <= 0 {
                continue;
            }
            let proto = match pm.protocol.to_ascii_lowercase().as_str() {
                "" | "tcp" => "tcp",
                "udp" => "udp",
                "sctp" => "sctp",
                other => {
                    return Err(Error::InvalidArgument(format!(
                        "port_mappings[{i}].protocol: {other:?} is not tcp, udp or sctp"
                    )))
                }
            };
            for (field, port) in [
                ("host_port", pm.host_port),
                ("container_port", pm.container_port),
            ] {
                if !(1..=65535).contains(&port) {
                    return Err(Error::InvalidArgument(format!(
                        "port_mappings[{i}].{field}: {port} is not a port"
                    )));
                }
            }
            let mut m = json!({
                "hostPort": pm.host_port,
                "containerPort": pm.container_port,
                "protocol": proto,
            });
            if !pm.host_ip.is_empty() {
                if pm.host_ip.parse::<std::net::IpAddr>().is_err() {
                    return Err(Error::InvalidArgument(format!(
                        "port_mappings[{i}].host_ip: {:?} is not an ip address",
                        pm.host_ip
                    )));
                }
                m["hostIP"] = json!(pm.host_ip);
            }
            ports.push(m);
        }
        if !ports.is_empty() {
            caps.insert("portMappings".into(), Value::Array(ports));
        }
        if let Some(bw) = &pod.bandwidth {
            caps.insert("bandwidth".into(), json!(bw));
        }
        let cidrs = self.pod_cidrs.read().unwrap_or_else(|e| e.into_inner());
        if !cidrs.is_empty() {
            let ranges: Vec<Value> = cidrs.iter().map(|c| json!([{ "subnet": c }])).collect();
            caps.insert("ipRanges".into(), Value::Array(ranges));
        }
        if let Some(dns) = pod.dns.as_ref().filter(|d| !d.is_empty()) {
            caps.insert("dns".into(), json!(dns));
        }
        Ok(caps)
    }

    /// ADD or DEL of the built-in loopback network (`lo` up in the pod).
    async fn loopback(&self, inv: &Invocation, netns: &Path, cmd: Command) -> Result<()> {
        let net = NetworkList::from_value(json!({
            "cniVersion": "1.0.0",
            "name": "cni-loopback",
            "type": "loopback",
        }))
        .expect("built-in loopback config is valid");
        let inv = Invocation {
            ifname: "lo".into(),
            netns: netns.to_string_lossy().into_owned(),
            ..inv.clone()
        };
        run_one(&net, &net.plugins[0], &inv, cmd, None, &Map::new())
            .await
            .map(|_| ())
    }

    async fn lock_pod(&self, pod_id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.pod_locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.retain(|_, w| w.strong_count() > 0);
            match locks.get(pod_id).and_then(Weak::upgrade) {
                Some(l) => l,
                None => {
                    let l = Arc::new(tokio::sync::Mutex::new(()));
                    locks.insert(pod_id.to_string(), Arc::downgrade(&l));
                    l
                }
            }
        };
        lock.lock_owned().await
    }
}

/// DEL of every plugin of the list in reverse order. Keeps going after a
/// failure so as much as possible is released, then reports every failure.
async fn del_list(
    net: &NetworkList,
    inv: &Invocation,
    caps: &Map<String, Value>,
    prev: Option<Value>,
) -> Result<()> {
    let mut failures: Vec<Error> = Vec::new();
    for p in net.plugins.iter().rev() {
        if let Err(e) = run_one(net, p, inv, Command::Del, prev.as_ref(), caps).await {
            tracing::warn!(pod_sandbox_id = %inv.container_id, error = %e, "cni del failed");
            failures.push(e);
        }
    }
    match failures.len() {
        0 => Ok(()),
        1 => Err(failures.remove(0)),
        _ => {
            let msg = failures
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ");
            Err(Error::Internal(msg))
        }
    }
}

/// Spec 0.4.0 and later hand the ADD result to DEL; 0.3.x does not.
fn prev_for_del(net: &NetworkList, result: Option<Value>) -> Option<Value> {
    result.filter(|_| net.at_least_0_4())
}

/// Builds one plugin's stdin (its config plus `name`, `cniVersion`,
/// `prevResult` and the declared capabilities as `runtimeConfig`) and runs it.
async fn run_one(
    net: &NetworkList,
    plugin_conf: &Map<String, Value>,
    inv: &Invocation,
    cmd: Command,
    prev: Option<&Value>,
    caps: &Map<String, Value>,
) -> Result<Vec<u8>> {
    let stdin = plugin_stdin(net, plugin_conf, prev, caps);
    let started = std::time::Instant::now();
    let kind = plugin_type(plugin_conf);
    let res = plugin::run(inv, cmd, kind, &net.name, stdin).await;
    crate::metrics::global().cni_call(cmd.as_str(), kind, &res, started.elapsed());
    res
}

fn plugin_stdin(
    net: &NetworkList,
    plugin_conf: &Map<String, Value>,
    prev: Option<&Value>,
    caps: &Map<String, Value>,
) -> Vec<u8> {
    let mut conf = plugin_conf.clone();
    conf.insert("name".into(), json!(net.name));
    conf.insert("cniVersion".into(), json!(net.cni_version));
    if let Some(prev) = prev {
        conf.insert("prevResult".into(), prev.clone());
    }
    if let Some(Value::Object(declared)) = plugin_conf.get("capabilities") {
        let runtime: Map<String, Value> = declared
            .iter()
            .filter(|(_, on)| **on == Value::Bool(true))
            .filter_map(|(cap, _)| caps.get(cap).map(|v| (cap.clone(), v.clone())))
            .collect();
        if !runtime.is_empty() {
            conf.insert("runtimeConfig".into(), Value::Object(runtime));
        }
    }
    serde_json::to_vec(&conf).expect("json values serialise")
}

fn plugin_type(p: &Map<String, Value>) -> &str {
    p.get("type").and_then(Value::as_str).unwrap_or_default()
}

/// `CNI_ARGS` as kubelet-era runtimes pass them.
fn cni_args(pod: &PodNetwork) -> String {
    format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
        pod.namespace, pod.name, pod.pod_id, pod.uid
    )
}

fn validate(pod: &PodNetwork) -> Result<()> {
    validate_id(&pod.pod_id)?;
    if !pod.netns.is_absolute() {
        return Err(Error::InvalidArgument(format!(
            "pod {}: netns {:?} is not an absolute path",
            pod.pod_id, pod.netns
        )));
    }
    for (field, v) in [
        ("name", &pod.name),
        ("namespace", &pod.namespace),
        ("uid", &pod.uid),
    ] {
        if v.contains([';', '=', '\0']) {
            return Err(Error::InvalidArgument(format!(
                "pod {}: {field} {v:?} contains ';', '=' or NUL",
                pod.pod_id
            )));
        }
    }
    Ok(())
}

/// Pod ids go into file names and `CNI_CONTAINERID` (which the spec limits to
/// alphanumerics plus `_.-`).
fn validate_id(id: &str) -> Result<()> {
    if !conf::valid_name(id) || id.starts_with(['.', '-']) {
        return Err(Error::InvalidArgument(format!(
            "pod id {id:?} must be letters, digits, '.', '_' or '-' and start with a letter or digit"
        )));
    }
    Ok(())
}

/// True when `p` is a namespace file (a pin bind mount or /proc/<pid>/ns/net),
/// not just a file left where a pin used to be mounted.
fn is_netns(p: &Path) -> bool {
    !p.as_os_str().is_empty()
        && nix::sys::statfs::statfs(p)
            .is_ok_and(|fs| fs.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Appends context to an error's message, keeping its kind.
fn with_suffix(e: Error, suffix: &str) -> Error {
    match e {
        Error::DeadlineExceeded(m) => Error::DeadlineExceeded(m + suffix),
        Error::FailedPrecondition(m) => Error::FailedPrecondition(m + suffix),
        Error::InvalidArgument(m) => Error::InvalidArgument(m + suffix),
        other => Error::Internal(format!("{other}{suffix}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::types::{Bandwidth, DnsSettings, PortMapping};

    fn pod() -> PodNetwork {
        PodNetwork {
            pod_id: "abc123".into(),
            netns: "/run/netns/x".into(),
            name: "web".into(),
            namespace: "default".into(),
            uid: "u-1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn runtime_config_carries_only_declared_capabilities() {
        let cni = Cni::new(CniConfig::default());
        cni.set_pod_cidr("10.1.0.0/24, fd00::/64");
        let mut p = pod();
        p.port_mappings = vec![
            PortMapping {
                container_port: 80,
                host_port: 8080,
                protocol: "TCP".into(),
                host_ip: "127.0.0.1".into(),
            },
            PortMapping {
                container_port: 53,
                host_port: 0,
                protocol: "UDP".into(),
                host_ip: String::new(),
            },
        ];
        p.bandwidth = Some(Bandwidth {
            ingress_rate: 1000,
            ingress_burst: 10,
            ..Default::default()
        });
        p.dns = Some(DnsSettings {
            servers: vec!["10.96.0.10".into()],
            ..Default::default()
        });
        let caps = cni.capability_args(&p).unwrap();
        let net = NetworkList::parse(
            br#"{"cniVersion":"1.0.0","name":"n","plugins":[
                {"type":"bridge","ipam":{"type":"host-local","ranges":[[{"subnet":"usePodCidr"}]]},
                 "capabilities":{"ipRanges":true}},
                {"type":"portmap","capabilities":{"portMappings":true,"bandwidth":false}},
                {"type":"tuning"}]}"#,
        )
        .unwrap();
        let prev = json!({"cniVersion":"1.0.0","ips":[]});
        let s: Value =
            serde_json::from_slice(&plugin_stdin(&net, &net.plugins[1], Some(&prev), &caps))
                .unwrap();
        assert_eq!(s["name"], "n");
        assert_eq!(s["cniVersion"], "1.0.0");
        assert_eq!(s["prevResult"], prev);
        assert_eq!(
            s["runtimeConfig"],
            json!({"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp","hostIP":"127.0.0.1"}]})
        );
        let s: Value =
            serde_json::from_slice(&plugin_stdin(&net, &net.plugins[0], None, &caps)).unwrap();
        assert_eq!(
            s["runtimeConfig"],
            json!({"ipRanges":[[{"subnet":"10.1.0.0/24"}],[{"subnet":"fd00::/64"}]]})
        );
        assert!(s.get("prevResult").is_none());
        let s: Value =
            serde_json::from_slice(&plugin_stdin(&net, &net.plugins[2], None, &caps)).unwrap();
        assert!(s.get("runtimeConfig").is_none());
        assert_eq!(caps["bandwidth"]["ingressRate"], 1000);
        assert_eq!(caps["dns"]["servers"][0], "10.96.0.10");
    }

    #[test]
    fn bad_requests_are_refused() {
        let cni = Cni::new(CniConfig::default());
        let mut p = pod();
        p.port_mappings = vec![PortMapping {
            container_port: 80,
            host_port: 8080,
            protocol: "icmp".into(),
            host_ip: String::new(),
        }];
        assert!(cni
            .capability_args(&p)
            .unwrap_err()
            .to_string()
            .contains("protocol"));
        p.port_mappings[0].protocol = "udp".into();
        p.port_mappings[0].container_port = 70000;
        assert!(cni
            .capability_args(&p)
            .unwrap_err()
            .to_string()
            .contains("container_port"));
        p.port_mappings[0].container_port = 80;
        p.port_mappings[0].host_ip = "localhost".into();
        assert!(cni
            .capability_args(&p)
            .unwrap_err()
            .to_string()
            .contains("host_ip"));

        for id in ["", "../x", "a/b", ".hidden", "-x"] {
            assert!(validate_id(id).is_err(), "{id:?}");
        }
        let mut p = pod();
        p.name = "a;K8S_POD_NAME=b".into();
        validate(&p).unwrap_err();
        let mut p = pod();
        p.netns = "relative".into();
        validate(&p).unwrap_err();
    }

    #[test]
    fn cni_args_match_what_plugins_expect() {
        assert_eq!(
            cni_args(&pod()),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=abc123;K8S_POD_UID=u-1"
        );
    }

    #[test]
    fn status_follows_the_config_dir_and_plugin_binaries() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let conf_dir = dir.path().join("net.d");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let cni = Cni::new(CniConfig {
            conf_dir: conf_dir.clone(),
            bin_dirs: vec![bin.clone()],
            ..Default::default()
        });
        let s = cni.status();
        assert!(!s.ready);
        assert_eq!(s.reason, NOT_READY_REASON);
        assert!(
            s.message.contains(&conf_dir.display().to_string()),
            "{}",
            s.message
        );
        std::fs::create_dir(&conf_dir).unwrap();
        assert!(!cni.status().ready);
        std::fs::write(
            conf_dir.join("10-n.conf"),
            r#"{"cniVersion":"1.0.0","name":"n","type":"bridge"}"#,
        )
        .unwrap();
        for plugin in ["loopback", "bridge"] {
            let s = cni.status();
            assert!(!s.ready);
            assert!(
                s.message.contains(&format!("needs plugin {plugin}")),
                "{}",
                s.message
            );
            let p = bin.join(plugin);
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let s = cni.status();
        assert!(s.ready, "{s:?}");
        assert!(s.reason.is_empty());
        std::fs::remove_file(conf_dir.join("10-n.conf")).unwrap();
        assert!(!cni.status().ready);
    }
}

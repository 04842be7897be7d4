//! RunPodSandbox: a pod without a pause process. berthd writes the pod's
//! hostname, hosts and resolv.conf files, mounts its shared `/dev/shm`, and pins
//! its network, IPC and UTS namespaces from a short-lived thread (unless the pod
//! uses the node's); a shared pid namespace goes through `berth-monitor pin-ns
//! --pid`, whose pause init keeps it alive. Every step pushes its undo; a failure
//! undoes them all, so a failed call leaves nothing behind.

use berth_runtime::monitor::command::MonitorCommand;
use berth_runtime::pin::PinOptions;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use berth_proto::v1::{
    NamespaceMode, PodSandboxConfig, RunPodSandboxRequest, RunPodSandboxResponse,
};

use super::lifecycle::{
    blocking, detached, mount_shm, remove_dir_if_exists, runtime_error, settle, unmount, Lifecycle,
    Rollback,
};
use super::CriService;
use crate::error::{Error, Result};
use crate::state::{
    new_id, now_nanos, outcome_error, wait_outcome, PodNamespacePaths, PodRecord, PodState,
    Reservation, RECORD_VERSION,
};

impl CriService {
    pub(crate) async fn run_pod_sandbox(
        &self,
        req: RunPodSandboxRequest,
    ) -> Result<RunPodSandboxResponse> {
        let lc = self.lifecycle.clone();
        let id = detached(async move { lc.run_pod_sandbox(req).await }).await?;
        Ok(RunPodSandboxResponse { pod_sandbox_id: id })
    }
}

impl Lifecycle {
    async fn run_pod_sandbox(self: Arc<Self>, req: RunPodSandboxRequest) -> Result<String> {
        let config = req
            .config
            .ok_or_else(|| Error::InvalidArgument("config: missing".into()))?;
        validate(&config, &req.runtime_handler)?;
        let md = config.metadata.clone().unwrap_or_default();
        let name = PodRecord::reservation_name(&md);
        let id = new_id()?;
        let guard = match self.pod_names.reserve(&name, &id) {
            Reservation::Fresh(g) => g,
            Reservation::InFlight { done, .. } => {
                // kubelet's retry of a call that is still running: same outcome.
                return wait_outcome(done).await.map_err(outcome_error);
            }
            Reservation::Taken { id } => {
                return Err(Error::AlreadyExists(format!(
                    "pod sandbox name {name:?} is already used by pod sandbox {id}"
                )))
            }
        };
        // From here on everything the RPC logs (rollback and CNI failures
        // included) names the new pod sandbox.
        tracing::Span::current().record("pod_sandbox_id", id.as_str());
        let mut rollback = Rollback::default();
        let outcome = match self
            .create_pod(&id, &name, config, req.runtime_handler, &mut rollback)
            .await
        {
            Ok(()) => {
                rollback.disarm();
                Ok(())
            }
            Err(e) => Err((e, rollback.run().await)),
        };
        settle(&self.pods, &self.store, guard, outcome, |r, _| {
            r.state = PodState::NotReady
        })
        .await?;
        tracing::info!(pod_sandbox_id = %id, name, "pod sandbox ready");
        Ok(id)
    }

    async fn create_pod(
        self: &Arc<Self>,
        id: &str,
        name: &str,
        config: PodSandboxConfig,
        runtime_handler: String,
        rollback: &mut Rollback,
    ) -> Result<()> {
        let ns_opts = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone())
            .unwrap_or_default();
        let userns = crate::spec::userns::pod_maps(&config)?;
        let host_net = ns_opts.network == NamespaceMode::Node as i32;
        let host_ipc = ns_opts.ipc == NamespaceMode::Node as i32;
        // pid POD: the pod's containers share one PID namespace, which needs an
        // init to live (berth-monitor's pause init, started by `pin-ns --pid`).
        let shared_pid = ns_opts.pid == NamespaceMode::Pod as i32;
        let pod_dir = self.pod_dir(id);
        let ns_dir = self.ns_dir(id);
        let cgroup_parent = config
            .linux
            .as_ref()
            .map(|l| l.cgroup_parent.clone())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| self.config.cgroup_parent.clone());
        let namespaces = PodNamespacePaths {
            net: (!host_net).then(|| ns_dir.join("net")),
            ipc: (!host_ipc).then(|| ns_dir.join("ipc")),
            uts: (!host_net).then(|| ns_dir.join("uts")),
            pid: shared_pid.then(|| ns_dir.join("pid")),
            user: userns.as_ref().map(|_| ns_dir.join("user")),
        };
        let pinned = !(host_net && host_ipc) || shared_pid || userns.is_some();
        let rec = PodRecord {
            version: RECORD_VERSION,
            id: id.to_string(),
            name: name.to_string(),
            config: config.clone(),
            runtime_handler,
            state: PodState::Creating,
            created_at: now_nanos(),
            pod_dir: pod_dir.clone(),
            ns_dir: pinned.then(|| ns_dir.clone()),
            namespaces,
            cgroup_parent,
            ips: None,
            resources: None,
            stopped_cleanly: false,
        };

        // The record comes first: if berthd dies mid-way, recovery finds a
        // `Creating` pod and cleans up after it.
        // The caller deletes it after a clean rollback.
        let entry = self.pods.insert(&self.store, id, rec)?;
        let op = entry.lock().await;

        std::fs::create_dir_all(&pod_dir).map_err(Error::io("create pod directory", &pod_dir))?;
        {
            let dir = pod_dir.clone();
            rollback.push("remove pod directory", move || async move {
                remove_dir_if_exists(&dir)
            });
        }
        if !host_ipc {
            mount_shm(&pod_dir.join("shm"))?;
            let shm = pod_dir.join("shm");
            rollback.push("unmount pod shm", move || async move { unmount(&shm) });
        }

        if pinned {
            let pin = PinOptions {
                dir: ns_dir.clone(),
                net: !host_net,
                uts: !host_net,
                ipc: !host_ipc,
                pid: shared_pid,
                hostname: (!host_net && !config.hostname.is_empty())
                    .then(|| config.hostname.clone()),
                sysctls: pod_sysctls(&config, host_net, host_ipc),
                uid_maps: userns.as_ref().map(|m| m.uids.clone()).unwrap_or_default(),
                gid_maps: userns.as_ref().map(|m| m.gids.clone()).unwrap_or_default(),
            };
            let dir = ns_dir.clone();
            // Registered before the call: pinning cleans up after itself on
            // failure, and unpinning what is not there is a no-op.
            rollback.push("unpin namespaces", move || async move {
                blocking(move || berth_runtime::unpin_namespaces(&dir).map_err(runtime_error)).await
            });
            if shared_pid || userns.is_some() {
                // The pid namespace's init must be a process of its own, and
                // only a single-threaded process may create a user namespace.
                self.run_monitor(&MonitorCommand::PinNs(pin)).await?;
            } else {
                // Net/IPC/UTS are per thread: a thread of berthd pins them
                // without the cost of starting a process.
                blocking(move || {
                    berth_runtime::pin_namespaces_in_thread(&pin).map_err(runtime_error)
                })
                .await?;
            }
        }

        // The undo goes first: CNI DEL is idempotent and also cleans up after
        // an ADD that failed or was cut short half way.
        {
            let lc = self.clone();
            let id = id.to_string();
            let config = config.clone();
            let netns = (!host_net).then(|| ns_dir.join("net"));
            rollback.push("tear down pod network", move || async move {
                lc.network_teardown(&id, &config, netns.as_deref()).await
            });
        }
        let netns = (!host_net).then(|| ns_dir.join("net"));
        let ips = self.network_setup(id, &config, netns.as_deref()).await?;
        write_pod_files(
            &pod_dir,
            &config,
            host_net,
            ips.as_ref().map(|i| i.ip.as_str()),
        )?;

        entry.update(&op, &self.store, self.pods.table(), id, |r| {
            r.state = PodState::Ready;
            r.ips = ips;
        })?;
        Ok(())
    }

    /// CNI ADD for a pod with its own network namespace (`netns`); host-network
    /// pods (`None`) skip CNI.
    pub(crate) async fn network_setup(
        &self,
        pod_id: &str,
        config: &PodSandboxConfig,
        netns: Option<&Path>,
    ) -> Result<Option<crate::network::PodIps>> {
        let Some(netns) = netns else { return Ok(None) };
        let pn = crate::network::PodNetwork::from_cri(pod_id, netns, config)?;
        Ok(Some(self.cni.setup(&pn).await?))
    }

    /// CNI DEL (idempotent: called on stop, remove and rollback; works after a
    /// restart from the cached result, and after the namespace is gone).
    pub(crate) async fn network_teardown(
        &self,
        pod_id: &str,
        config: &PodSandboxConfig,
        netns: Option<&Path>,
    ) -> Result<()> {
        let Some(netns) = netns else { return Ok(()) };
        // Never refuses the stored config: Stop/Remove must converge.
        let pn = crate::network::PodNetwork::for_teardown(pod_id, netns, config);
        self.cni.teardown(&pn).await
    }
}

fn validate(config: &PodSandboxConfig, runtime_handler: &str) -> Result<()> {
    let md = config
        .metadata
        .as_ref()
        .ok_or_else(|| Error::InvalidArgument("config.metadata: missing".into()))?;
    super::validate::pod_sandbox(config)?;
    for (field, value) in [
        ("name", &md.name),
        ("namespace", &md.namespace),
        ("uid", &md.uid),
    ] {
        if value.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "config.metadata.{field}: empty"
            )));
        }
        if value.contains('/') || value.contains('\0') {
            return Err(Error::InvalidArgument(format!(
                "config.metadata.{field}: {value:?} contains '/' or NUL"
            )));
        }
    }
    if !runtime_handler.is_empty() {
        return Err(Error::NotFound(format!(
            "runtime_handler: {runtime_handler:?} is not configured (berth has only the default handler)"
        )));
    }
    if config.hostname.len() > 64 || config.hostname.contains(['/', '\0', '\n']) {
        return Err(Error::InvalidArgument(format!(
            "config.hostname: {:?} is not a valid hostname",
            config.hostname
        )));
    }
    if !config.log_directory.is_empty() && !config.log_directory.starts_with('/') {
        return Err(Error::InvalidArgument(format!(
            "config.log_directory: {:?} is not an absolute path",
            config.log_directory
        )));
    }
    if let Some(dns) = &config.dns_config {
        for (i, s) in dns.servers.iter().enumerate() {
            if s.parse::<IpAddr>().is_err() {
                return Err(Error::InvalidArgument(format!(
                    "config.dns_config.servers[{i}]: {s:?} is not an IP address"
                )));
            }
        }
        for (list, field) in [(&dns.searches, "searches"), (&dns.options, "options")] {
            if let Some(i) = list
                .iter()
                .position(|s| s.is_empty() || s.contains(char::is_whitespace))
            {
                return Err(Error::InvalidArgument(format!(
                    "config.dns_config.{field}[{i}]: {:?} is empty or contains whitespace",
                    list[i]
                )));
            }
        }
    }
    let ns = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default();
    for (field, v) in [("network", ns.network), ("ipc", ns.ipc), ("pid", ns.pid)] {
        let mode = NamespaceMode::try_from(v).map_err(|_| {
            Error::InvalidArgument(format!(
                "config.linux.security_context.namespace_options.{field}: unknown mode {v}"
            ))
        })?;
        if field != "pid" && !matches!(mode, NamespaceMode::Pod | NamespaceMode::Node) {
            return Err(Error::InvalidArgument(format!(
                "config.linux.security_context.namespace_options.{field}: a pod's namespace is POD or NODE, not {}",
                mode.as_str_name()
            )));
        }
    }
    crate::spec::userns::pod_maps(config)?;
    Ok(())
}

/// The pod sysctls that belong to the namespaces berthd pins (the rest are
/// applied per container by the runtime, or refused there).
fn pod_sysctls(config: &PodSandboxConfig, host_net: bool, host_ipc: bool) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = config
        .linux
        .as_ref()
        .map(|l| l.sysctls.clone().into_iter().collect())
        .unwrap_or_default();
    out.retain(|(k, _)| {
        let k = k.replace('/', ".");
        if k.starts_with("net.") {
            !host_net
        } else if k.starts_with("kernel.shm")
            || k.starts_with("kernel.msg")
            || k == "kernel.sem"
            || k.starts_with("fs.mqueue.")
        {
            !host_ipc
        } else {
            false
        }
    });
    for kv in &mut out {
        kv.0 = kv.0.replace('/', ".");
    }
    out.sort();
    out
}

/// hostname, hosts and resolv.conf, bind-mounted into every container of the
/// pod. Without a configured hostname the pod's UTS namespace keeps the node's
/// (it is a copy made at unshare), so the files say the same.
fn write_pod_files(
    dir: &Path,
    config: &PodSandboxConfig,
    host_net: bool,
    ip: Option<&str>,
) -> Result<()> {
    let hostname = if config.hostname.is_empty() {
        nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .map_err(|e| Error::Internal(format!("read the node's hostname: {e}")))?
    } else {
        config.hostname.clone()
    };
    let dns = config
        .dns_config
        .as_ref()
        .map(|d| crate::network::DnsSettings {
            servers: d.servers.clone(),
            searches: d.searches.clone(),
            options: d.options.clone(),
        })
        .unwrap_or_default();
    crate::network::write_pod_files(dir, &hostname, ip, &dns, host_net)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{
        DnsConfig, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceOption,
    };

    fn config() -> PodSandboxConfig {
        crate::cri::lifecycle::fake::web_pod()
    }

    fn err(c: &PodSandboxConfig) -> String {
        validate(c, "").unwrap_err().to_string()
    }

    #[test]
    fn malformed_configs_are_refused_naming_the_field() {
        validate(&config(), "").unwrap();
        let mut c = config();
        c.metadata = None;
        assert!(err(&c).starts_with("config.metadata"));
        let mut c = config();
        c.metadata.as_mut().unwrap().uid.clear();
        assert!(err(&c).starts_with("config.metadata.uid"));
        let mut c = config();
        c.metadata.as_mut().unwrap().name = "a/b".into();
        assert!(err(&c).starts_with("config.metadata.name"));
        let mut c = config();
        c.dns_config = Some(DnsConfig {
            servers: vec!["1.1.1.1".into(), "nope".into()],
            ..Default::default()
        });
        assert!(err(&c).starts_with("config.dns_config.servers[1]"));
        let mut c = config();
        c.log_directory = "relative/logs".into();
        assert!(err(&c).starts_with("config.log_directory"));
        assert!(validate(&config(), "kata")
            .unwrap_err()
            .to_string()
            .starts_with("runtime_handler"));
    }

    #[test]
    fn shared_pid_namespace_and_absent_namespace_options_are_accepted() {
        let mut c = config();
        c.linux = Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    pid: NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        validate(&c, "").unwrap();
        // Absent namespace options mean POD for every namespace (crictl's minimal config).
        c.linux = None;
        validate(&c, "").unwrap();
    }

    #[test]
    fn only_sysctls_of_pinned_namespaces_go_to_pin_ns() {
        let mut c = config();
        let mut l = LinuxPodSandboxConfig::default();
        for (k, v) in [
            ("net.ipv4.ip_forward", "1"),
            ("kernel.shmmax", "9"),
            ("vm.swappiness", "1"),
            ("net/core/somaxconn", "64"),
        ] {
            l.sysctls.insert(k.into(), v.into());
        }
        c.linux = Some(l);
        let got = pod_sysctls(&c, false, false);
        assert_eq!(
            got,
            vec![
                ("kernel.shmmax".to_string(), "9".to_string()),
                ("net.core.somaxconn".into(), "64".into()),
                ("net.ipv4.ip_forward".into(), "1".into())
            ]
        );
        assert_eq!(
            pod_sysctls(&c, true, false),
            vec![("kernel.shmmax".to_string(), "9".to_string())]
        );
    }
}

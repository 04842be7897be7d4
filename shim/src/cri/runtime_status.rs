//! Version, Status and RuntimeConfig: what kubelet asks before anything else.

use std::collections::HashMap;

use berth_proto::v1::{
    CgroupDriver, LinuxRuntimeConfiguration, RuntimeCondition, RuntimeConfigRequest,
    RuntimeConfigResponse, RuntimeStatus, StatusRequest, StatusResponse,
    UpdateRuntimeConfigRequest, UpdateRuntimeConfigResponse, VersionRequest, VersionResponse,
};

use super::CriService;
use crate::error::{Error, Result};

/// The CRI API version berth speaks.
pub const RUNTIME_API_VERSION: &str = "v1";
/// The name berth reports as its runtime.
pub const RUNTIME_NAME: &str = "berth";

impl CriService {
    pub(crate) async fn version(&self, _req: VersionRequest) -> Result<VersionResponse> {
        Ok(VersionResponse {
            // `version` is the version of the kubelet-runtime API (historically "0.1.0").
            version: "0.1.0".into(),
            runtime_name: RUNTIME_NAME.into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: RUNTIME_API_VERSION.into(),
        })
    }

    pub(crate) async fn status(&self, req: StatusRequest) -> Result<StatusResponse> {
        let net = self.lifecycle.cni.status();
        let conditions = vec![
            RuntimeCondition {
                r#type: "RuntimeReady".into(),
                status: true,
                reason: String::new(),
                message: String::new(),
            },
            // False with a reason until a usable CNI config exists, so kubelet
            // keeps non-host-network pods off this node until then.
            RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: net.ready,
                reason: net.reason,
                message: net.message,
            },
        ];
        let mut info = HashMap::new();
        if req.verbose {
            // Each value is a JSON document, as crictl's `info` expects.
            let json = |v: serde_json::Value| {
                serde_json::to_string(&v).map_err(|e| Error::Internal(e.to_string()))
            };
            info.insert(
                "config".to_string(),
                json(
                    serde_json::to_value(&*self.config)
                        .map_err(|e| Error::Internal(e.to_string()))?,
                )?,
            );
            // The node's cgroup layout, so an operator can tell a v2 node
            // (what current kubelets require) from a v1 or hybrid one.
            info.insert(
                "cgroup".to_string(),
                json(crate::cgroup_host::describe(
                    std::path::Path::new("/sys/fs/cgroup"),
                    &self.config.cgroup_driver,
                ))?,
            );
            info.insert(
                "runtime".to_string(),
                json(serde_json::json!({
                    "name": RUNTIME_NAME,
                    "version": env!("CARGO_PKG_VERSION"),
                    "apiVersion": RUNTIME_API_VERSION,
                }))?,
            );
            // Where Prometheus scrapes this berthd (the bound port, also when
            // the config asked for port 0); `berth info` shows it.
            let metrics = match crate::metrics::served_at() {
                Some(a) => serde_json::json!({
                    "address": a.to_string(),
                    "metrics": format!("http://{a}/metrics"),
                    "healthz": format!("http://{a}/healthz"),
                }),
                None => serde_json::json!({ "address": "", "enabled": false }),
            };
            info.insert("metrics".to_string(), json(metrics)?);
        }
        Ok(StatusResponse {
            status: Some(RuntimeStatus { conditions }),
            info,
            runtime_handlers: runtime_handlers(),
            features: None,
        })
    }

    pub(crate) async fn update_runtime_config(
        &self,
        req: UpdateRuntimeConfigRequest,
    ) -> Result<UpdateRuntimeConfigResponse> {
        // kubelet sends the node's pod CIDR here; CNI configs that ask for the
        // `ipRanges` capability get it.
        if let Some(cidr) = req
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
            .filter(|c| !c.is_empty())
        {
            self.lifecycle.cni.set_pod_cidr(&cidr);
        }
        Ok(UpdateRuntimeConfigResponse {})
    }

    pub(crate) async fn runtime_config(
        &self,
        _req: RuntimeConfigRequest,
    ) -> Result<RuntimeConfigResponse> {
        let driver = match self.config.cgroup_driver.as_str() {
            "systemd" => CgroupDriver::Systemd,
            _ => CgroupDriver::Cgroupfs,
        };
        Ok(RuntimeConfigResponse {
            linux: Some(LinuxRuntimeConfiguration {
                cgroup_driver: driver as i32,
            }),
        })
    }
}

/// The one (default, unnamed) handler and what it supports, as a kubelet
/// reads it: pods with `hostUsers: false` are only sent to a runtime that
/// says `user_namespaces`, and `recursiveReadOnly: Enabled` mounts only to
/// one that says `recursive_read_only_mounts` (mount_setattr, kernel 5.12+).
fn runtime_handlers() -> Vec<berth_proto::v1::RuntimeHandler> {
    vec![berth_proto::v1::RuntimeHandler {
        name: String::new(),
        features: Some(berth_proto::v1::RuntimeHandlerFeatures {
            recursive_read_only_mounts: true,
            user_namespaces: true,
        }),
    }]
}

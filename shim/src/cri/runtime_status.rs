//! Version, Status and RuntimeConfig: what kubelet asks before anything else.

use std::collections::HashMap;

use berth_proto::v1::{
    CgroupDriver, LinuxRuntimeConfiguration, RuntimeCondition, RuntimeConfigRequest,
    RuntimeConfigResponse, RuntimeStatus, StatusRequest, StatusResponse, VersionRequest,
    VersionResponse,
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
        let conditions = vec![
            RuntimeCondition {
                r#type: "RuntimeReady".into(),
                status: true,
                reason: String::new(),
                message: String::new(),
            },
            // Pod networking (CNI) is not built yet: say so, as a runtime without a
            // CNI config does, so kubelet keeps non-host-network pods off this node.
            RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: false,
                reason: "NetworkPluginNotReady".into(),
                message: "berth: pod networking (CNI) is not implemented yet".into(),
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
            info.insert(
                "runtime".to_string(),
                json(serde_json::json!({
                    "name": RUNTIME_NAME,
                    "version": env!("CARGO_PKG_VERSION"),
                    "apiVersion": RUNTIME_API_VERSION,
                }))?,
            );
        }
        Ok(StatusResponse {
            status: Some(RuntimeStatus { conditions }),
            info,
            runtime_handlers: Vec::new(),
            features: None,
        })
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

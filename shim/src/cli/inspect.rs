//! `inspect`, `inspectp`, `inspecti`: the verbose status of a container, pod
//! or image as `{"status": …, "info": {…}}`, the shape crictl prints.

use std::collections::HashMap;

use berth_proto::v1::{
    ContainerStatusRequest, ImageSpec, ImageStatusRequest, PodSandboxStatusRequest,
};
use clap::Args;

use super::output;
use super::pods::with_id;
use crate::client::CriClient;
use crate::error::{Error, Result};

/// `berth inspect[p|i] ID...`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Ids (containers, pods) or references (images).
    #[arg(required = true)]
    pub ids: Vec<String>,
    /// Output format: json, yaml (go-template is not supported).
    #[arg(short = 'o', long, default_value = "json")]
    pub output: String,
}

/// Verbose info values are JSON documents: parse them so they show inline,
/// keeping a value that is not JSON as a string. Sorted by key.
pub fn inline_info(info: &HashMap<String, String>) -> Vec<(String, serde_json::Value)> {
    let mut out: Vec<_> = info
        .iter()
        .map(|(k, raw)| {
            let v = serde_json::from_str(raw)
                .unwrap_or_else(|_| serde_json::Value::String(raw.clone()));
            (k.clone(), v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// `{"status": status, <key>: <value>…}`: as crictl does, each verbose info
/// entry sits beside the status, so berthd's `info` entry becomes `"info": {…}`.
pub fn document<T: serde::Serialize>(
    status: &T,
    info: &HashMap<String, String>,
) -> Result<serde_json::Value> {
    let mut doc = serde_json::Map::new();
    doc.insert("status".into(), output::to_value(status)?);
    for (k, v) in inline_info(info) {
        if k != "status" {
            doc.insert(k, v);
        }
    }
    Ok(serde_json::Value::Object(doc))
}

/// `berth inspect`.
pub async fn container(cri: &mut CriClient, a: InspectArgs) -> Result<()> {
    for id in &a.ids {
        let r = cri
            .runtime
            .container_status(ContainerStatusRequest {
                container_id: id.clone(),
                verbose: true,
            })
            .await
            .map_err(|e| with_id("container status", id, e))?
            .into_inner();
        let status = r
            .status
            .ok_or_else(|| Error::NotFound(format!("container {id:?}: no status returned")))?;
        output::print_doc(&document(&status, &r.info)?, &a.output)?;
    }
    Ok(())
}

/// `berth inspectp`.
pub async fn pod(cri: &mut CriClient, a: InspectArgs) -> Result<()> {
    for id in &a.ids {
        let r = cri
            .runtime
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: id.clone(),
                verbose: true,
            })
            .await
            .map_err(|e| with_id("pod sandbox status", id, e))?
            .into_inner();
        let status = r
            .status
            .ok_or_else(|| Error::NotFound(format!("pod sandbox {id:?}: no status returned")))?;
        output::print_doc(&document(&status, &r.info)?, &a.output)?;
    }
    Ok(())
}

/// `berth inspecti`.
pub async fn image(cri: &mut CriClient, a: InspectArgs) -> Result<()> {
    for reference in &a.ids {
        let r = cri
            .image
            .image_status(ImageStatusRequest {
                image: Some(ImageSpec {
                    image: reference.clone(),
                    ..Default::default()
                }),
                verbose: true,
            })
            .await?
            .into_inner();
        let image = r
            .image
            .ok_or_else(|| Error::NotFound(format!("no such image {reference:?}")))?;
        output::print_doc(&document(&image, &r.info)?, &a.output)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{ContainerState, ContainerStatus};

    #[test]
    fn document_uses_protobuf_json_names_and_inlines_info() {
        let status = ContainerStatus {
            id: "abc".into(),
            state: ContainerState::ContainerRunning as i32,
            created_at: 1_700_000_000_000_000_000,
            ..Default::default()
        };
        let info = HashMap::from([
            (
                "info".to_string(),
                r#"{"pid": 42, "sandboxID": "p"}"#.to_string(),
            ),
            ("plain".to_string(), "not json".to_string()),
        ]);
        let doc = document(&status, &info).unwrap();
        assert_eq!(doc["status"]["id"], "abc");
        assert_eq!(doc["status"]["state"], "CONTAINER_RUNNING");
        assert_eq!(doc["status"]["createdAt"], "1700000000000000000");
        assert_eq!(doc["info"]["pid"], 42);
        assert_eq!(doc["info"]["sandboxID"], "p");
        assert_eq!(doc["plain"], "not json");
    }
}

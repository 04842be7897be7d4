//! `berth events`: streams GetContainerEvents, one document per event.

use berth_proto::v1::GetEventsRequest;

use super::output;
use crate::client::CriClient;
use crate::error::{Error, Result};

/// `berth events`.
pub async fn events(cri: &mut CriClient, format: &str) -> Result<()> {
    if format != "json" && format != "yaml" {
        return Err(Error::InvalidArgument(format!(
            "output: {format:?} is not one of json, yaml"
        )));
    }
    let mut stream = cri
        .runtime
        .get_container_events(GetEventsRequest {})
        .await?
        .into_inner();
    while let Some(event) = stream.message().await? {
        let doc = output::to_value(&event)?;
        if format == "yaml" {
            println!("---");
        }
        output::print_doc(&doc, format)?;
    }
    Ok(())
}

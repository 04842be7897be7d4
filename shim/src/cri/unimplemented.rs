//! RPCs that are not built yet. Each answers `UNIMPLEMENTED` naming itself, so a
//! kubelet or crictl sees a clear "not yet" instead of a fake success. When an
//! RPC is built, move its method out of here into its own `<object>_<verb>.rs`.

use berth_proto::v1::{CheckpointContainerRequest, CheckpointContainerResponse};

use super::CriService;
use crate::error::{Error, Result};

fn unimplemented<T>(rpc: &str) -> Result<T> {
    Err(Error::Unimplemented(format!(
        "{rpc} is not implemented by berth yet"
    )))
}

impl CriService {
    pub(crate) async fn checkpoint_container(
        &self,
        _req: CheckpointContainerRequest,
    ) -> Result<CheckpointContainerResponse> {
        unimplemented("CheckpointContainer")
    }
}

//! RemoveImage: drop an image with all its names; unknown images succeed.

use berth_proto::v1::{RemoveImageRequest, RemoveImageResponse};

use super::CriService;
use crate::error::{Error, Result};

impl CriService {
    /// Removes the image and frees blobs and snapshots nothing else uses.
    pub(crate) async fn remove_image(
        &self,
        req: RemoveImageRequest,
    ) -> Result<RemoveImageResponse> {
        let spec = req
            .image
            .ok_or_else(|| Error::InvalidArgument("image: missing image spec".into()))?;
        if spec.image.trim().is_empty() {
            return Err(Error::InvalidArgument(
                "image.image: empty image reference".into(),
            ));
        }
        self.images.remove(spec.image.trim()).await?;
        Ok(RemoveImageResponse {})
    }
}

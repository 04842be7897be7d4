//! ListImages and StreamImages (the same list, sent in pages).

use berth_proto::v1::{
    Image, ImageFilter, ListImagesRequest, ListImagesResponse, StreamImagesRequest,
    StreamImagesResponse,
};

use super::image_status::to_cri_image;
use super::{BoxStream, CriService};
use crate::error::Result;

/// Images per StreamImages message.
const PAGE: usize = 100;

impl CriService {
    fn filtered_images(&self, filter: Option<ImageFilter>) -> Result<Vec<Image>> {
        let wanted = filter
            .and_then(|f| f.image)
            .map(|s| s.image)
            .filter(|s| !s.trim().is_empty());
        let recs = match wanted {
            Some(name) => self.images.resolve(&name)?.into_iter().collect(),
            None => self.images.list()?,
        };
        Ok(recs.iter().map(to_cri_image).collect())
    }

    /// Every image, or the one the filter names.
    pub(crate) async fn list_images(&self, req: ListImagesRequest) -> Result<ListImagesResponse> {
        Ok(ListImagesResponse {
            images: self.filtered_images(req.filter)?,
        })
    }

    /// ListImages as a stream of pages.
    pub(crate) async fn stream_images(
        &self,
        req: StreamImagesRequest,
    ) -> Result<BoxStream<StreamImagesResponse>> {
        let images = self.filtered_images(req.filter)?;
        let pages: Vec<_> = images
            .chunks(PAGE)
            .map(|c| Ok(StreamImagesResponse { images: c.to_vec() }))
            .collect();
        Ok(Box::pin(futures::stream::iter(pages)))
    }
}

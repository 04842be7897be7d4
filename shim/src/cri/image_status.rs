//! ImageStatus, and the conversion of an image record to CRI's `Image`.

use std::collections::HashMap;

use berth_proto::v1::{Image, ImageSpec, ImageStatusRequest, ImageStatusResponse, Int64Value};

use super::CriService;
use crate::error::{Error, Result};
use crate::image::ImageRecord;

/// The image's user as CRI reports it: a numeric uid, or else a user name
/// (the part before any `:group`); neither when the image sets no user.
pub(crate) fn image_user(user: &str) -> (Option<Int64Value>, String) {
    let name = user.split(':').next().unwrap_or("");
    if name.is_empty() {
        return (None, String::new());
    }
    match name.parse::<i64>() {
        Ok(uid) => (Some(Int64Value { value: uid }), String::new()),
        Err(_) => (None, name.to_string()),
    }
}

/// A record as CRI's `Image`.
pub(crate) fn to_cri_image(rec: &ImageRecord) -> Image {
    let (uid, username) = image_user(&rec.config.user);
    Image {
        id: rec.id.clone(),
        repo_tags: rec.repo_tags.clone(),
        repo_digests: rec.repo_digests.clone(),
        size: rec.size,
        uid,
        username,
        spec: Some(ImageSpec {
            image: rec.id.clone(),
            ..Default::default()
        }),
        pinned: rec.pinned,
    }
}

impl CriService {
    /// Status of one image; an unknown image is an empty answer, not an error.
    pub(crate) async fn image_status(
        &self,
        req: ImageStatusRequest,
    ) -> Result<ImageStatusResponse> {
        let spec = req
            .image
            .ok_or_else(|| Error::InvalidArgument("image: missing image spec".into()))?;
        let Some(rec) = self.images.resolve(&spec.image)? else {
            return Ok(ImageStatusResponse::default());
        };
        let mut info = HashMap::new();
        if req.verbose {
            let doc = serde_json::json!({
                "imageSpec": rec.config_json,
                "chainID": rec.chain_ids.last(),
                "chainIDs": rec.chain_ids,
                "manifestDigest": rec.manifest_digest,
                "platform": rec.platform,
                "pinned": rec.pinned,
                "pullStats": {
                    "blobDownloads": self.images.stats().blob_downloads,
                    "bytesDownloaded": self.images.stats().bytes_downloaded,
                },
            });
            info.insert("info".to_string(), doc.to_string());
        }
        Ok(ImageStatusResponse {
            image: Some(to_cri_image(&rec)),
            info,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_is_uid_or_name() {
        assert_eq!(image_user(""), (None, String::new()));
        assert_eq!(
            image_user("1000"),
            (Some(Int64Value { value: 1000 }), String::new())
        );
        assert_eq!(
            image_user("0:0"),
            (Some(Int64Value { value: 0 }), String::new())
        );
        assert_eq!(image_user("nobody:nogroup"), (None, "nobody".to_string()));
        assert_eq!(image_user(":5"), (None, String::new()));
    }
}

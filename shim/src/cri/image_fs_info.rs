//! ImageFsInfo: space and inodes used by images and by containers' writable layers.

use berth_proto::v1::{
    FilesystemIdentifier, FilesystemUsage, ImageFsInfoRequest, ImageFsInfoResponse, UInt64Value,
};

use super::CriService;
use crate::error::Result;
use crate::image::DirUsage;

fn usage(u: &DirUsage, timestamp: i64) -> FilesystemUsage {
    FilesystemUsage {
        timestamp,
        fs_id: Some(FilesystemIdentifier {
            mountpoint: u.mountpoint.display().to_string(),
        }),
        used_bytes: Some(UInt64Value {
            value: u.used_bytes,
        }),
        inodes_used: Some(UInt64Value {
            value: u.inodes_used,
        }),
    }
}

impl CriService {
    /// Walks the image and container directories (off the async threads).
    pub(crate) async fn image_fs_info(
        &self,
        _req: ImageFsInfoRequest,
    ) -> Result<ImageFsInfoResponse> {
        let images = self.images.clone();
        let fs = crate::tasks::blocking(move || images.fs_info()).await?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Ok(ImageFsInfoResponse {
            image_filesystems: vec![usage(&fs.images, now)],
            container_filesystems: vec![usage(&fs.containers, now)],
        })
    }
}

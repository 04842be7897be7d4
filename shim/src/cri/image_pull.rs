//! PullImage: fetch an image (and its platform's layers) into the image store.

use berth_proto::v1::{AuthConfig, PullImageRequest, PullImageResponse};

use super::CriService;
use crate::error::{Error, Result};
use crate::image::Credentials;

/// CRI's AuthConfig as the image service's credentials.
pub(crate) fn credentials(a: AuthConfig) -> Option<Credentials> {
    let c = Credentials {
        username: a.username,
        password: a.password,
        auth: a.auth,
        identity_token: a.identity_token,
        registry_token: a.registry_token,
        server_address: a.server_address,
    };
    (c != Credentials::default()).then_some(c)
}

impl CriService {
    /// Pulls `req.image` and answers with the image id, as containerd does.
    pub(crate) async fn pull_image(&self, req: PullImageRequest) -> Result<PullImageResponse> {
        let spec = req
            .image
            .ok_or_else(|| Error::InvalidArgument("image: missing image spec".into()))?;
        if spec.image.trim().is_empty() {
            return Err(Error::InvalidArgument(
                "image.image: empty image reference".into(),
            ));
        }
        let auth = req.auth.and_then(credentials);
        let rec = self.images.pull(spec.image.trim(), auth).await?;
        Ok(PullImageResponse { image_ref: rec.id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_auth_is_anonymous() {
        assert!(credentials(AuthConfig::default()).is_none());
        let c = credentials(AuthConfig {
            username: "u".into(),
            password: "p".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p"));
    }
}

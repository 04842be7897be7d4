//! PullImage: fetch an image (and its platform's layers) into the image store.
//!
//! A pull can outlast its client's deadline (a kubelet gives it 2 minutes by
//! default, crictl `-t`). tonic's own timeout answers CANCELLED when the
//! `grpc-timeout` the client sent runs out; the CRI clients read that as "the
//! caller gave up", so the body runs under the same deadline, a little
//! earlier, and answers DEADLINE_EXCEEDED itself.

use std::time::Duration;

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

/// The most a pull's own deadline runs ahead of tonic's timer, which started
/// when the request arrived, a moment before the body.
const DEADLINE_LEAD: Duration = Duration::from_millis(50);

/// The client's `grpc-timeout` (`<1-8 digits><H|M|S|m|u|n>`), if it sent one
/// that parses; a bad header is tonic's to refuse, not ours.
pub(crate) fn client_timeout(md: &tonic::metadata::MetadataMap) -> Option<Duration> {
    let v = md.get("grpc-timeout")?.to_str().ok()?;
    parse_grpc_timeout(v)
}

fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

impl CriService {
    /// Pulls `req.image` and answers with the image id, as containerd does;
    /// DEADLINE_EXCEEDED when `deadline` (the client's timeout) runs out first.
    pub(crate) async fn pull_image(
        &self,
        req: PullImageRequest,
        deadline: Option<Duration>,
    ) -> Result<PullImageResponse> {
        let Some(deadline) = deadline else {
            return self.pull_image_now(req).await;
        };
        let budget = deadline.saturating_sub(DEADLINE_LEAD.min(deadline / 10));
        let image = req
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        match tokio::time::timeout(budget, self.pull_image_now(req)).await {
            Ok(r) => r,
            Err(_) => Err(Error::DeadlineExceeded(format!(
                "pull of {image:?} did not finish within the client's deadline of {deadline:?}"
            ))),
        }
    }

    async fn pull_image_now(&self, req: PullImageRequest) -> Result<PullImageResponse> {
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
    fn grpc_timeout_header_parses_every_unit_and_refuses_junk() {
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_grpc_timeout("1500m"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_grpc_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_grpc_timeout("9n"), Some(Duration::from_nanos(9)));
        for bad in ["", "S", "123456789S", "5x", "-1S", "1.5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

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

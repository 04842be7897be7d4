//! A small client of the OCI distribution API: push blobs, manifests and indexes,
//! fetch manifests and blobs back. Used to seed the local test registry.

use reqwest::{header, Method, StatusCode, Url};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::image_builder::{
    sha256_digest, Blob, Image, ImageIndex, MEDIA_DOCKER_LIST, MEDIA_DOCKER_MANIFEST,
    MEDIA_OCI_INDEX, MEDIA_OCI_MANIFEST,
};

/// Talks to one registry over HTTP or HTTPS, optionally with basic auth.
#[derive(Clone, Debug)]
pub struct RegistryClient {
    http: reqwest::Client,
    base: Url,
    credentials: Option<(String, String)>,
}

/// A manifest (or index) as the registry served it.
#[derive(Clone, Debug)]
pub struct FetchedManifest {
    /// The response's `Content-Type`.
    pub media_type: String,
    /// `sha256:` digest of the bytes received (checked against `Docker-Content-Digest`).
    pub digest: String,
    pub data: Vec<u8>,
}

impl FetchedManifest {
    /// The manifest parsed as JSON.
    pub fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.data).map_err(|source| Error::Json {
            what: format!("manifest {}", self.digest),
            source,
        })
    }
}

impl RegistryClient {
    /// A plain-HTTP client of `host` (`127.0.0.1:5000`), no auth.
    pub fn new(host: &str) -> Result<Self> {
        Self::with_options(host, None, None)
    }

    /// A client of `host`: HTTPS trusting `ca_pem` when given, else plain HTTP; basic
    /// auth on every request when `credentials` are given.
    pub fn with_options(
        host: &str,
        ca_pem: Option<&str>,
        credentials: Option<(String, String)>,
    ) -> Result<Self> {
        let scheme = if ca_pem.is_some() { "https" } else { "http" };
        let base = Url::parse(&format!("{scheme}://{host}/")).map_err(|e| Error::BadResponse {
            url: host.into(),
            message: format!("bad registry host: {e}"),
        })?;
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(std::time::Duration::from_secs(300));
        if let Some(pem) = ca_pem {
            let cert = reqwest::Certificate::from_pem(pem.as_bytes())
                .map_err(|e| Error::Tls(format!("parse registry ca: {e}")))?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder
            .build()
            .map_err(|e| Error::Tls(format!("build http client: {e}")))?;
        Ok(RegistryClient {
            http,
            base,
            credentials,
        })
    }

    /// The registry's base URL (`http://127.0.0.1:5000/`).
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    fn url(&self, path: &str) -> Url {
        // `path` is built by us from repo names and digests; join only fails on
        // malformed input, in which case the base is as good an answer as any.
        self.base.join(path).unwrap_or_else(|_| self.base.clone())
    }

    fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let req = self.http.request(method, url);
        match &self.credentials {
            Some((user, pass)) => req.basic_auth(user, Some(pass)),
            None => req,
        }
    }

    async fn send(
        &self,
        method: &'static str,
        url: &Url,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        req.send().await.map_err(|source| Error::Http {
            method,
            url: url.to_string(),
            source,
        })
    }

    async fn expect(
        method: &'static str,
        url: &Url,
        resp: reqwest::Response,
        ok: &[StatusCode],
    ) -> Result<reqwest::Response> {
        if ok.contains(&resp.status()) {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        Err(Error::Status {
            method,
            url: url.to_string(),
            status,
            body,
        })
    }

    /// `GET /v2/`: the HTTP status the registry answers with (200, or 401 when auth
    /// is required and no or wrong credentials were sent).
    pub async fn ping(&self) -> Result<u16> {
        let url = self.url("v2/");
        let resp = self
            .send("GET", &url, self.request(Method::GET, url.clone()))
            .await?;
        Ok(resp.status().as_u16())
    }

    /// `HEAD /v2/<repo>/blobs/<digest>`: whether the registry holds the blob.
    pub async fn blob_exists(&self, repo: &str, digest: &str) -> Result<bool> {
        let url = self.url(&format!("v2/{repo}/blobs/{digest}"));
        let resp = self
            .send("HEAD", &url, self.request(Method::HEAD, url.clone()))
            .await?;
        match resp.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Self::expect("HEAD", &url, resp, &[]).await.map(|_| false),
        }
    }

    /// Uploads a blob unless the registry already has it: `POST` to open an upload
    /// session, then one monolithic `PUT ?digest=`.
    pub async fn push_blob(&self, repo: &str, blob: &Blob) -> Result<()> {
        if self.blob_exists(repo, &blob.digest).await? {
            return Ok(());
        }
        let url = self.url(&format!("v2/{repo}/blobs/uploads/"));
        let resp = self
            .send(
                "POST",
                &url,
                self.request(Method::POST, url.clone())
                    .header(header::CONTENT_LENGTH, "0"),
            )
            .await?;
        let resp = Self::expect("POST", &url, resp, &[StatusCode::ACCEPTED]).await?;
        let location = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Error::BadResponse {
                url: url.to_string(),
                message: "upload session without a Location header".into(),
            })?;
        // Location may be absolute or relative, and may already carry a query.
        let mut put_url = url.join(location).map_err(|e| Error::BadResponse {
            url: url.to_string(),
            message: format!("bad upload location {location}: {e}"),
        })?;
        put_url
            .query_pairs_mut()
            .append_pair("digest", &blob.digest);
        let resp = self
            .send(
                "PUT",
                &put_url,
                self.request(Method::PUT, put_url.clone())
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .body(blob.data.clone()),
            )
            .await?;
        Self::expect("PUT", &put_url, resp, &[StatusCode::CREATED]).await?;
        Ok(())
    }

    /// `PUT /v2/<repo>/manifests/<reference>`; returns the digest the registry
    /// assigned (checked against the digest of the bytes sent).
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        data: &[u8],
    ) -> Result<String> {
        let url = self.url(&format!("v2/{repo}/manifests/{reference}"));
        let resp = self
            .send(
                "PUT",
                &url,
                self.request(Method::PUT, url.clone())
                    .header(header::CONTENT_TYPE, media_type)
                    .body(data.to_vec()),
            )
            .await?;
        let resp = Self::expect("PUT", &url, resp, &[StatusCode::CREATED]).await?;
        let ours = sha256_digest(data);
        if let Some(theirs) = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
        {
            if theirs != ours {
                return Err(Error::BadResponse {
                    url: url.to_string(),
                    message: format!("registry says manifest digest {theirs}, we sent {ours}"),
                });
            }
        }
        Ok(ours)
    }

    /// Pushes an image's layers, config and manifest, tagged `tag`; returns the
    /// manifest digest (pull it as `<host>/<repo>@<digest>`).
    pub async fn push_image(&self, repo: &str, tag: &str, image: &Image) -> Result<String> {
        for layer in &image.layers {
            self.push_blob(repo, &layer.blob).await?;
        }
        self.push_blob(repo, &image.config).await?;
        self.put_manifest(repo, tag, &image.manifest.media_type, &image.manifest.data)
            .await
    }

    /// Pushes every platform's image (by digest), then the index tagged `tag`;
    /// returns the index digest.
    pub async fn push_index(&self, repo: &str, tag: &str, index: &ImageIndex) -> Result<String> {
        for image in &index.images {
            for layer in &image.layers {
                self.push_blob(repo, &layer.blob).await?;
            }
            self.push_blob(repo, &image.config).await?;
            self.put_manifest(
                repo,
                &image.manifest.digest,
                &image.manifest.media_type,
                &image.manifest.data,
            )
            .await?;
        }
        self.put_manifest(repo, tag, &index.index.media_type, &index.index.data)
            .await
    }

    /// `GET /v2/<repo>/manifests/<reference>` (tag or digest), accepting every
    /// manifest and index type we produce. Verifies the bytes against the digest the
    /// registry claims and, for a digest reference, against the reference.
    pub async fn fetch_manifest(&self, repo: &str, reference: &str) -> Result<FetchedManifest> {
        let url = self.url(&format!("v2/{repo}/manifests/{reference}"));
        let accept = [
            MEDIA_OCI_MANIFEST,
            MEDIA_OCI_INDEX,
            MEDIA_DOCKER_MANIFEST,
            MEDIA_DOCKER_LIST,
        ]
        .join(", ");
        let resp = self
            .send(
                "GET",
                &url,
                self.request(Method::GET, url.clone())
                    .header(header::ACCEPT, accept),
            )
            .await?;
        let resp = Self::expect("GET", &url, resp, &[StatusCode::OK]).await?;
        let media_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let claimed = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let data = resp.bytes().await.map_err(|source| Error::Http {
            method: "GET",
            url: url.to_string(),
            source,
        })?;
        let digest = sha256_digest(&data);
        let expected =
            claimed.or_else(|| reference.starts_with("sha256:").then(|| reference.into()));
        if let Some(expected) = expected {
            if expected != digest {
                return Err(Error::BadResponse {
                    url: url.to_string(),
                    message: format!("manifest digest {digest}, expected {expected}"),
                });
            }
        }
        Ok(FetchedManifest {
            media_type,
            digest,
            data: data.to_vec(),
        })
    }

    /// `GET /v2/<repo>/blobs/<digest>`: the blob's bytes, unverified (tests that
    /// tamper with blobs want to see what the registry really serves).
    pub async fn fetch_blob(&self, repo: &str, digest: &str) -> Result<Vec<u8>> {
        let url = self.url(&format!("v2/{repo}/blobs/{digest}"));
        let resp = self
            .send("GET", &url, self.request(Method::GET, url.clone()))
            .await?;
        let resp = Self::expect("GET", &url, resp, &[StatusCode::OK]).await?;
        let data = resp.bytes().await.map_err(|source| Error::Http {
            method: "GET",
            url: url.to_string(),
            source,
        })?;
        Ok(data.to_vec())
    }

    /// `DELETE /v2/<repo>/manifests/<digest>` (the registry runs with delete enabled).
    pub async fn delete_manifest(&self, repo: &str, digest: &str) -> Result<()> {
        let url = self.url(&format!("v2/{repo}/manifests/{digest}"));
        let resp = self
            .send("DELETE", &url, self.request(Method::DELETE, url.clone()))
            .await?;
        Self::expect(
            "DELETE",
            &url,
            resp,
            &[StatusCode::ACCEPTED, StatusCode::OK],
        )
        .await?;
        Ok(())
    }
}

/// Pushes `image` to the plain-HTTP registry at `host` as `repo:tag`; returns the
/// manifest digest.
pub async fn push_image(host: &str, repo: &str, tag: &str, image: &Image) -> Result<String> {
    RegistryClient::new(host)?
        .push_image(repo, tag, image)
        .await
}

/// Pushes a multi-platform index to the plain-HTTP registry at `host` as `repo:tag`;
/// returns the index digest.
pub async fn push_index(host: &str, repo: &str, tag: &str, index: &ImageIndex) -> Result<String> {
    RegistryClient::new(host)?
        .push_index(repo, tag, index)
        .await
}

/// Fetches `repo:reference` (tag or digest) from the plain-HTTP registry at `host`.
pub async fn fetch_manifest(host: &str, repo: &str, reference: &str) -> Result<FetchedManifest> {
    RegistryClient::new(host)?
        .fetch_manifest(repo, reference)
        .await
}

//! A pull-only client of the OCI distribution API, on `reqwest` + rustls (ring).
//!
//! Why not `oci-client`: its TLS settings (extra CAs, accepting invalid
//! certificates) and its HTTP/HTTPS choice are fixed per client and keyed by
//! registry name, while containerd's `hosts.toml` model needs them per mirror
//! endpoint, with `override_path` API roots, `?ns=` on mirror requests and a
//! fallback through the endpoint list on every request. It also buffers
//! manifests and blobs in its own types; here the blob body is handed over as a
//! byte stream so it can be hashed, stored and unpacked as it arrives. The
//! protocol surface we need is small: GET manifests and blobs, the `Basic` and
//! `Bearer` challenge flows of the token spec.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine as _;
use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE,
};
use reqwest::{Client, Response, StatusCode};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

use super::content::{digest_mismatch, sha256_digest};
use super::hosts::Endpoint;

/// Media types a manifest request accepts.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Largest manifest or config we read into memory.
pub const MAX_SMALL_BLOB: u64 = 8 << 20;

/// Registry credentials, as CRI's `AuthConfig` carries them.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Credentials {
    /// User name for basic auth (or for the token server).
    pub username: String,
    /// Password for basic auth.
    pub password: String,
    /// `base64(username:password)`, used when username is empty.
    pub auth: String,
    /// An OAuth2 refresh token for the registry's token server.
    pub identity_token: String,
    /// A bearer token sent to the registry as is.
    pub registry_token: String,
    /// The registry these are meant for (informational).
    pub server_address: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("server_address", &self.server_address)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// `(user, password)` from the explicit fields or the `auth` blob.
    fn basic(&self) -> Result<Option<(String, String)>> {
        if !self.username.is_empty() {
            return Ok(Some((self.username.clone(), self.password.clone())));
        }
        if self.auth.is_empty() {
            return Ok(None);
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(self.auth.trim())
            .map_err(|e| Error::InvalidArgument(format!("auth.auth: not base64: {e}")))?;
        let s = String::from_utf8(raw)
            .map_err(|_| Error::InvalidArgument("auth.auth: not utf-8".into()))?;
        let (u, p) = s.split_once(':').ok_or_else(|| {
            Error::InvalidArgument("auth.auth: expected base64 of user:password".into())
        })?;
        Ok(Some((u.to_string(), p.to_string())))
    }
}

/// Builds the HTTP client for one endpoint's TLS settings.
pub fn http_client(ep: &Endpoint) -> Result<Client> {
    let mut b = Client::builder()
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(std::time::Duration::from_secs(30))
        .pool_max_idle_per_host(8);
    for path in &ep.ca {
        let pem = std::fs::read(path).map_err(Error::io("read registry ca", path))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| Error::InvalidArgument(format!("registry ca {}: {e}", path.display())))?;
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    if ep.skip_verify {
        b = b.danger_accept_invalid_certs(true);
    }
    b.build()
        .map_err(|e| Error::Internal(format!("http client for {}: {e}", ep.api_root)))
}

/// One pull's view of a repository: its endpoints, credentials and tokens.
#[derive(Debug)]
pub struct Session {
    repository: String,
    endpoints: Vec<(Endpoint, Client)>,
    creds: Option<Credentials>,
    /// Authorization header per endpoint host, learned from challenges.
    auth: Mutex<HashMap<String, HeaderValue>>,
}

/// A fetched manifest or index.
#[derive(Debug)]
pub struct Fetched {
    /// Raw bytes, exactly as served (their sha256 is the digest).
    pub bytes: Vec<u8>,
    /// The `Content-Type` the registry gave, or the `mediaType` field.
    pub media_type: String,
    /// `sha256:` of `bytes`.
    pub digest: String,
}

impl Session {
    /// A session for `repository` over `endpoints`; `default` is the shared
    /// client used for endpoints without custom TLS settings.
    pub fn new(
        repository: &str,
        endpoints: Vec<Endpoint>,
        default: &Client,
        creds: Option<Credentials>,
    ) -> Result<Session> {
        let mut eps = Vec::new();
        for ep in endpoints {
            let client = if ep.ca.is_empty() && !ep.skip_verify {
                default.clone()
            } else {
                http_client(&ep)?
            };
            eps.push((ep, client));
        }
        if let Some(c) = &creds {
            c.basic()?; // report a malformed auth blob before any request
        }
        Ok(Session {
            repository: repository.to_string(),
            endpoints: eps,
            creds,
            auth: Mutex::new(HashMap::new()),
        })
    }

    /// Fetches a manifest or index by tag or digest; a digest is verified.
    pub async fn manifest(&self, object: &str) -> Result<Fetched> {
        let by_digest = object.starts_with("sha256:");
        let path = format!("/{}/manifests/{object}", self.repository);
        let resp = self
            .get(
                &path,
                Some(MANIFEST_ACCEPT),
                |ep| if by_digest { ep.pull } else { ep.resolve },
                "manifest",
                object,
            )
            .await?;
        let header_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or("").trim().to_string());
        let bytes = read_limited(resp, MAX_SMALL_BLOB, &format!("manifest {object}")).await?;
        let digest = sha256_digest(&bytes);
        if by_digest && digest != object {
            return Err(digest_mismatch("manifest", object, &digest));
        }
        #[derive(Deserialize)]
        struct Probe {
            #[serde(rename = "mediaType", default)]
            media_type: String,
        }
        let probe: Probe = serde_json::from_slice(&bytes).map_err(|e| {
            Error::FailedPrecondition(format!("manifest {object}: invalid json: {e}"))
        })?;
        let media_type = if probe.media_type.is_empty() {
            header_type.unwrap_or_default()
        } else {
            probe.media_type
        };
        Ok(Fetched {
            bytes,
            media_type,
            digest,
        })
    }

    /// Starts downloading blob `digest`; the caller streams and verifies it.
    pub async fn blob(&self, digest: &str) -> Result<Response> {
        let path = format!("/{}/blobs/{digest}", self.repository);
        self.get(&path, None, |ep| ep.pull, "blob", digest).await
    }

    /// Downloads a small blob (a config) into memory and verifies it.
    pub async fn small_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let resp = self.blob(digest).await?;
        let bytes = read_limited(resp, MAX_SMALL_BLOB, &format!("blob {digest}")).await?;
        let actual = sha256_digest(&bytes);
        if actual != digest {
            return Err(digest_mismatch("blob", digest, &actual));
        }
        Ok(bytes)
    }

    /// GET `path` from the first endpoint allowed by `usable` that answers
    /// with success; later endpoints are tried when one fails.
    async fn get(
        &self,
        path: &str,
        accept: Option<&str>,
        usable: impl Fn(&Endpoint) -> bool,
        what: &str,
        object: &str,
    ) -> Result<Response> {
        let mut last: Option<Error> = None;
        for (ep, client) in self.endpoints.iter().filter(|(ep, _)| usable(ep)) {
            match self.get_from(ep, client, path, accept, what, object).await {
                Ok(r) => return Ok(r),
                Err(e) => {
                    tracing::debug!(endpoint = %ep.api_root, error = %e, "registry endpoint failed");
                    // Keep the most telling error: a later "not found" from the
                    // upstream beats a mirror's connection error, but an auth
                    // failure is what the user must fix.
                    if !matches!(
                        last,
                        Some(Error::Unauthenticated(_) | Error::PermissionDenied(_))
                    ) {
                        last = Some(e);
                    }
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            Error::FailedPrecondition(format!("no registry endpoint may serve {what} {object}"))
        }))
    }

    async fn get_from(
        &self,
        ep: &Endpoint,
        client: &Client,
        path: &str,
        accept: Option<&str>,
        what: &str,
        object: &str,
    ) -> Result<Response> {
        let url = ep.url(path);
        let host = ep.host();
        let mut retried = false;
        loop {
            let mut headers = HeaderMap::new();
            for (k, v) in &ep.headers {
                if let (Ok(k), Ok(v)) = (
                    HeaderName::try_from(k.as_str()),
                    HeaderValue::try_from(v.as_str()),
                ) {
                    headers.append(k, v);
                }
            }
            if let Some(a) = accept {
                headers.insert(
                    ACCEPT,
                    HeaderValue::from_str(a).expect("static accept header"),
                );
            }
            if let Some(v) = self.auth_header(&host) {
                headers.insert(AUTHORIZATION, v);
            }
            let resp = client
                .get(&url)
                .headers(headers)
                .send()
                .await
                .map_err(|e| {
                    Error::Unavailable(format!("{what} {object}: {url}: {}", error_chain(&e)))
                })?;
            let status = resp.status();
            if status.is_success() {
                return Ok(resp);
            }
            if status == StatusCode::UNAUTHORIZED && !retried {
                retried = true;
                let challenge = resp
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let header = self.authorize(client, &challenge, what, object).await?;
                self.auth
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(host.clone(), header);
                continue;
            }
            let body = resp.text().await.unwrap_or_default();
            let body: String = body.chars().take(300).collect();
            let msg = format!("{what} {object}: {url}: {status}: {}", body.trim());
            return Err(match status {
                StatusCode::NOT_FOUND => Error::NotFound(msg),
                StatusCode::UNAUTHORIZED => Error::Unauthenticated(msg),
                StatusCode::FORBIDDEN => Error::PermissionDenied(msg),
                _ => Error::Unavailable(msg),
            });
        }
    }

    fn auth_header(&self, host: &str) -> Option<HeaderValue> {
        if let Some(v) = self
            .auth
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(host)
        {
            return Some(v.clone());
        }
        let token = self
            .creds
            .as_ref()
            .map(|c| c.registry_token.as_str())
            .unwrap_or("");
        if token.is_empty() {
            None
        } else {
            HeaderValue::from_str(&format!("Bearer {token}")).ok()
        }
    }

    /// Answers a `WWW-Authenticate` challenge with an Authorization header.
    async fn authorize(
        &self,
        client: &Client,
        challenge: &str,
        what: &str,
        object: &str,
    ) -> Result<HeaderValue> {
        let unauth = |why: String| Error::Unauthenticated(format!("{what} {object}: {why}"));
        let (scheme, params) = parse_challenge(challenge);
        let basic = match &self.creds {
            Some(c) => c.basic()?,
            None => None,
        };
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => {
                let (u, p) = basic.ok_or_else(|| unauth("registry requires credentials".into()))?;
                let enc = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
                HeaderValue::from_str(&format!("Basic {enc}")).map_err(|e| unauth(e.to_string()))
            }
            "bearer" => {
                let realm = params
                    .get("realm")
                    .ok_or_else(|| unauth("bearer challenge without realm".into()))?;
                let scope = params
                    .get("scope")
                    .cloned()
                    .unwrap_or_else(|| format!("repository:{}:pull", self.repository));
                let service = params.get("service").cloned().unwrap_or_default();
                let identity = self
                    .creds
                    .as_ref()
                    .map(|c| c.identity_token.as_str())
                    .unwrap_or("");
                let req = if !identity.is_empty() {
                    client.post(realm).form(&[
                        ("grant_type", "refresh_token"),
                        ("refresh_token", identity),
                        ("service", &service),
                        ("scope", &scope),
                        ("client_id", "berth"),
                    ])
                } else {
                    let mut r = client
                        .get(realm)
                        .query(&[("service", &service), ("scope", &scope)]);
                    if let Some((u, p)) = &basic {
                        r = r.basic_auth(u, Some(p));
                    }
                    r
                };
                let resp = req.send().await.map_err(|e| {
                    Error::Unavailable(format!("token server {realm}: {}", error_chain(&e)))
                })?;
                let status = resp.status();
                if !status.is_success() {
                    return Err(unauth(format!("token server {realm} answered {status}")));
                }
                #[derive(Deserialize)]
                struct Token {
                    #[serde(default)]
                    token: String,
                    #[serde(default)]
                    access_token: String,
                }
                let bytes = read_limited(resp, 1 << 20, "token").await?;
                let t: Token = serde_json::from_slice(&bytes)
                    .map_err(|e| unauth(format!("token server {realm}: invalid json: {e}")))?;
                let token = if t.token.is_empty() {
                    t.access_token
                } else {
                    t.token
                };
                if token.is_empty() {
                    return Err(unauth(format!("token server {realm} returned no token")));
                }
                HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| unauth(e.to_string()))
            }
            _ => Err(unauth(format!("unsupported auth challenge {challenge:?}"))),
        }
    }
}

/// Splits `Bearer realm="x",service="y"` into the scheme and its parameters.
pub fn parse_challenge(h: &str) -> (String, HashMap<String, String>) {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let mut params = HashMap::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let Some((k, after)) = s.split_once('=') else {
            break;
        };
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (v, tail) = if let Some(q) = after.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = q.char_indices();
            let mut end = q.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            out.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => out.push(c),
                }
            }
            (out, &q[end.min(q.len())..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.insert(k, v);
        s = tail.trim_start().trim_start_matches(',').trim_start();
    }
    (scheme.to_string(), params)
}

/// Reads a response body of at most `limit` bytes.
pub async fn read_limited(mut resp: Response, limit: u64, what: &str) -> Result<Vec<u8>> {
    if resp.content_length().is_some_and(|l| l > limit) {
        return Err(Error::FailedPrecondition(format!(
            "{what}: larger than {limit} bytes"
        )));
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| Error::Unavailable(format!("{what}: {}", error_chain(&e))))?
    {
        if out.len() as u64 + chunk.len() as u64 > limit {
            return Err(Error::FailedPrecondition(format!(
                "{what}: larger than {limit} bytes"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// An error with its causes, which reqwest keeps in the source chain.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_parsing() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(s, "Bearer");
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:library/busybox:pull");
        let (s, p) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!(
            (s.as_str(), p["realm"].as_str()),
            ("Basic", "Registry Realm")
        );
        let (_, p) = parse_challenge("Bearer realm=x, scope=\"a\\\"b\"");
        assert_eq!((p["realm"].as_str(), p["scope"].as_str()), ("x", "a\"b"));
        let (s, p) = parse_challenge("");
        assert!(s.is_empty() && p.is_empty());
    }

    /// A loopback HTTP server speaking just enough of the distribution token
    /// flow: a manifest behind a Bearer challenge and a token endpoint that
    /// takes basic auth (GET) or a refresh token (POST). Returns its address
    /// and a counter of token requests.
    async fn token_registry() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let hits = std::sync::Arc::new(AtomicUsize::new(0));
        let (a, h) = (addr.clone(), hits.clone());
        tokio::spawn(async move {
            loop {
                let (mut c, _) = l.accept().await.unwrap();
                let (a, h) = (a.clone(), h.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut tmp = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        let n = c.read(&mut tmp).await.unwrap();
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&tmp[..n]);
                    }
                    let req = String::from_utf8_lossy(&buf).to_string();
                    let line = req.lines().next().unwrap_or("").to_string();
                    let auth = req
                        .lines()
                        .find_map(|l| {
                            l.strip_prefix("authorization: ")
                                .or(l.strip_prefix("Authorization: "))
                        })
                        .unwrap_or("")
                        .to_string();
                    let basic = format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode("u:p")
                    );
                    let manifest = r#"{"schemaVersion":2,"config":{"digest":"sha256:00","size":1},"layers":[]}"#;
                    let (status, headers, body) = if line
                        .starts_with("GET /v2/lib/app/manifests/v1 ")
                    {
                        if auth == "Bearer tok-123" {
                            (
                                "200 OK",
                                "content-type: application/vnd.oci.image.manifest.v1+json\r\n"
                                    .to_string(),
                                manifest.to_string(),
                            )
                        } else {
                            (
                                "401 Unauthorized",
                                format!("www-authenticate: Bearer realm=\"http://{a}/token\",service=\"reg\",scope=\"repository:lib/app:pull\"\r\n"),
                                String::new(),
                            )
                        }
                    } else if line.starts_with("GET /token?")
                        && line.contains("scope=repository%3Alib%2Fapp%3Apull")
                    {
                        h.fetch_add(1, Ordering::SeqCst);
                        if auth == basic {
                            (
                                "200 OK",
                                String::new(),
                                r#"{"token":"tok-123"}"#.to_string(),
                            )
                        } else {
                            ("401 Unauthorized", String::new(), String::new())
                        }
                    } else if line.starts_with("POST /token ") {
                        h.fetch_add(1, Ordering::SeqCst);
                        // The form body may follow in a later read.
                        let mut rest = req.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
                        while !rest.contains("refresh_token=rt") && rest.len() < 4096 {
                            let n = c.read(&mut tmp).await.unwrap();
                            if n == 0 {
                                break;
                            }
                            rest.push_str(&String::from_utf8_lossy(&tmp[..n]));
                        }
                        if rest.contains("grant_type=refresh_token")
                            && rest.contains("refresh_token=rt")
                        {
                            (
                                "200 OK",
                                String::new(),
                                r#"{"access_token":"tok-123"}"#.to_string(),
                            )
                        } else {
                            ("401 Unauthorized", String::new(), String::new())
                        }
                    } else {
                        ("404 Not Found", String::new(), String::new())
                    };
                    let resp = format!(
                        "HTTP/1.1 {status}\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = c.write_all(resp.as_bytes()).await;
                });
            }
        });
        (addr, hits)
    }

    #[tokio::test]
    async fn bearer_token_flow_with_basic_refresh_and_preset_tokens() {
        use std::sync::atomic::Ordering;
        let (addr, hits) = token_registry().await;
        let dir = tempfile::tempdir().unwrap();
        let eps = || super::super::hosts::endpoints(dir.path(), &addr).unwrap();
        let client = Client::new();
        let session = |c: Option<Credentials>| Session::new("lib/app", eps(), &client, c).unwrap();

        let basic = Credentials {
            username: "u".into(),
            password: "p".into(),
            ..Default::default()
        };
        let s = session(Some(basic));
        let m = s.manifest("v1").await.unwrap();
        assert_eq!(m.media_type, "application/vnd.oci.image.manifest.v1+json");
        assert_eq!(m.digest, sha256_digest(&m.bytes));
        s.manifest("v1").await.unwrap();
        assert_eq!(
            hits.load(Ordering::SeqCst),
            1,
            "the token is reused within a session"
        );

        let err = session(None).manifest("v1").await.unwrap_err();
        assert!(matches!(err, Error::Unauthenticated(_)), "{err}");
        let wrong = Credentials {
            username: "u".into(),
            password: "x".into(),
            ..Default::default()
        };
        let err = session(Some(wrong)).manifest("v1").await.unwrap_err();
        assert!(matches!(err, Error::Unauthenticated(_)), "{err}");

        let refresh = Credentials {
            identity_token: "rt".into(),
            ..Default::default()
        };
        session(Some(refresh)).manifest("v1").await.unwrap();

        let before = hits.load(Ordering::SeqCst);
        let preset = Credentials {
            registry_token: "tok-123".into(),
            ..Default::default()
        };
        session(Some(preset)).manifest("v1").await.unwrap();
        assert_eq!(
            hits.load(Ordering::SeqCst),
            before,
            "a registry token needs no token server"
        );

        let by_digest = session(None)
            .manifest(&format!("sha256:{}", "0".repeat(64)))
            .await;
        by_digest.unwrap_err();
    }

    #[test]
    fn credentials_from_auth_blob() {
        let c = Credentials {
            auth: base64::engine::general_purpose::STANDARD.encode("u:p:w"),
            ..Default::default()
        };
        assert_eq!(c.basic().unwrap(), Some(("u".into(), "p:w".into())));
        let c = Credentials {
            auth: "!!".into(),
            password: "secret".into(),
            ..Default::default()
        };
        c.basic().unwrap_err();
        assert!(!format!("{c:?}").contains("secret"));
        assert_eq!(Credentials::default().basic().unwrap(), None);
    }
}

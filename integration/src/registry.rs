//! A real OCI registry for tests: Debian's `docker-registry` (distribution v2) as a
//! child process on a free loopback port, storing blobs in a private tempdir.
//! Killed and removed on drop, also when the test panics.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::push::RegistryClient;

/// Where Debian's `docker-registry` package installs the binary; override with
/// `BERTH_DOCKER_REGISTRY`.
pub const DEFAULT_REGISTRY_BINARY: &str = "/usr/bin/docker-registry";

const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How to start a [`Registry`].
#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    /// Serve HTTPS with a certificate for `127.0.0.1`/`localhost` signed by a
    /// throw-away CA generated for this registry ([`Registry::ca_cert_pem`]).
    pub tls: bool,
    /// Require HTTP basic auth with this user and password (bcrypt htpasswd file).
    pub basic_auth: Option<(String, String)>,
}

impl RegistryOptions {
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    pub fn basic_auth(mut self, user: &str, password: &str) -> Self {
        self.basic_auth = Some((user.into(), password.into()));
        self
    }
}

/// TLS material of a registry started with [`RegistryOptions::tls`].
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub ca_cert_pem: String,
    pub ca_cert_path: PathBuf,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

/// A running `docker-registry`.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    port: u16,
    tls: Option<TlsFiles>,
    basic_auth: Option<(String, String)>,
    log_path: PathBuf,
    storage: PathBuf,
    // Last field: dropped after the process is killed in Drop.
    dir: tempfile::TempDir,
}

impl Registry {
    /// The registry binary: `$BERTH_DOCKER_REGISTRY` or [`DEFAULT_REGISTRY_BINARY`].
    pub fn binary() -> PathBuf {
        std::env::var_os("BERTH_DOCKER_REGISTRY")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_REGISTRY_BINARY))
    }

    /// Why registry tests cannot run here, if they cannot.
    pub fn unavailable_reason() -> Option<String> {
        let bin = Self::binary();
        (!bin.is_file()).then(|| {
            format!(
                "{} not found (apt-get install docker-registry, or set BERTH_DOCKER_REGISTRY)",
                bin.display()
            )
        })
    }

    /// Starts a plain-HTTP registry without auth.
    pub async fn start() -> Result<Registry> {
        Self::start_with(RegistryOptions::default()).await
    }

    /// Starts a registry, retrying on another port if the chosen one got taken
    /// between probing and binding.
    pub async fn start_with(options: RegistryOptions) -> Result<Registry> {
        let mut last = None;
        for _ in 0..3 {
            match Self::start_once(&options).await {
                Ok(r) => return Ok(r),
                Err(e @ Error::ExitedEarly { .. })
                    if e.to_string().contains("address already in use") =>
                {
                    last = Some(e)
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::NotReady {
            what: "docker-registry".into(),
            seconds: READY_TIMEOUT.as_secs(),
            log: String::new(),
        }))
    }

    async fn start_once(options: &RegistryOptions) -> Result<Registry> {
        let dir = tempfile::Builder::new()
            .prefix("berth-registry-")
            .tempdir()
            .map_err(Error::io(std::env::temp_dir()))?;
        let storage = dir.path().join("storage");
        std::fs::create_dir(&storage).map_err(Error::io(&storage))?;
        let port = free_port()?;
        let tls = if options.tls {
            Some(write_tls_files(dir.path())?)
        } else {
            None
        };
        let htpasswd = match &options.basic_auth {
            Some((user, pass)) => Some(write_htpasswd(dir.path(), user, pass)?),
            None => None,
        };
        let config = render_config(&storage, port, tls.as_ref(), htpasswd.as_deref());
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).map_err(Error::io(&config_path))?;

        let log_path = dir.path().join("registry.log");
        let log = File::create(&log_path).map_err(Error::io(&log_path))?;
        let log2 = log.try_clone().map_err(Error::io(&log_path))?;
        let binary = Self::binary();
        let child = Command::new(&binary)
            .arg("serve")
            .arg(&config_path)
            // The registry reads REGISTRY_* variables as config overrides; a clean
            // environment keeps the config file authoritative.
            .env_clear()
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|source| Error::Spawn {
                program: binary.clone(),
                source,
            })?;
        let mut registry = Registry {
            child,
            port,
            tls,
            basic_auth: options.basic_auth.clone(),
            log_path,
            storage,
            dir,
        };
        registry.wait_ready().await?;
        Ok(registry)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        // Anonymous on purpose: any HTTP answer (200, or 401 with auth) means ready.
        let client = RegistryClient::with_options(
            &self.host(),
            self.tls.as_ref().map(|t| t.ca_cert_pem.as_str()),
            None,
        )?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(Error::ExitedEarly {
                    what: "docker-registry".into(),
                    status,
                    log: self.log(),
                });
            }
            if client.ping().await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::NotReady {
                    what: "docker-registry".into(),
                    seconds: READY_TIMEOUT.as_secs(),
                    log: self.log(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `127.0.0.1:PORT`, the registry part of image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// `http(s)://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme(), self.host())
    }

    /// `127.0.0.1:PORT/<repo>:<tag>` (or `@digest` when `tag` starts with `sha256:`).
    pub fn image_ref(&self, repo: &str, tag_or_digest: &str) -> String {
        let sep = if tag_or_digest.starts_with("sha256:") {
            '@'
        } else {
            ':'
        };
        format!("{}/{repo}{sep}{tag_or_digest}", self.host())
    }

    /// The filesystem storage root (`rootdirectory` in the registry config).
    pub fn storage_dir(&self) -> &Path {
        &self.storage
    }

    /// Where the registry keeps a blob's bytes; tests overwrite it to serve corrupt
    /// content under the original digest.
    pub fn blob_data_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        let prefix = hex.get(..2).unwrap_or(hex);
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(prefix)
            .join(hex)
            .join("data")
    }

    /// TLS files, when started with TLS.
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// The PEM of the CA that signed the registry's certificate, when TLS is on.
    pub fn ca_cert_pem(&self) -> Option<&str> {
        self.tls.as_ref().map(|t| t.ca_cert_pem.as_str())
    }

    /// The configured basic-auth user and password.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.basic_auth
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// A client trusting the registry's CA and sending its credentials.
    pub fn client(&self) -> Result<RegistryClient> {
        RegistryClient::with_options(&self.host(), self.ca_cert_pem(), self.basic_auth.clone())
    }

    /// Writes `<certs_d>/<host>/hosts.toml` (containerd's registry host layout,
    /// which berthd's `registry.config_path` reads too) so that pulls of
    /// `127.0.0.1:PORT/...` go to this registry over plain HTTP, or over HTTPS
    /// trusting its CA. Returns the file written.
    pub fn write_hosts_toml(&self, certs_d: &Path) -> Result<PathBuf> {
        let dir = certs_d.join(self.host());
        std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        let url = self.url();
        let mut text = format!(
            "server = \"{url}\"\n\n[host.\"{url}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
        );
        if let Some(t) = &self.tls {
            text.push_str(&format!("  ca = \"{}\"\n", t.ca_cert_path.display()));
        }
        let path = dir.join("hosts.toml");
        std::fs::write(&path, text).map_err(Error::io(&path))?;
        Ok(path)
    }

    /// The registry's stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The tempdir holding config, storage, certificates and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- docker-registry log ({}) ----\n{}",
                self.host(),
                tail(&self.log(), 100)
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last `lines` lines of a log.
pub(crate) fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(Error::io("127.0.0.1:0"))?;
    let port = l.local_addr().map_err(Error::io("127.0.0.1:0"))?.port();
    Ok(port)
}

fn render_config(
    storage: &Path,
    port: u16,
    tls: Option<&TlsFiles>,
    htpasswd: Option<&Path>,
) -> String {
    let mut c = format!(
        "version: 0.1\n\
         log:\n  level: info\n  formatter: text\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  \
         maintenance:\n    uploadpurging:\n      enabled: false\n\
         http:\n  addr: 127.0.0.1:{port}\n  secret: berth-integration-test\n",
        storage.display()
    );
    if let Some(t) = tls {
        c.push_str(&format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            t.cert_path.display(),
            t.key_path.display()
        ));
    }
    if let Some(h) = htpasswd {
        c.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
            h.display()
        ));
    }
    c
}

/// Generates a CA and a server certificate for 127.0.0.1/localhost signed by
/// it into `dir` (also what the streaming TLS tests serve).
pub fn write_tls_files(dir: &Path) -> Result<TlsFiles> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let tls_err = |e: rcgen::Error| Error::Tls(format!("generate certificate: {e}"));
    let ca_key = KeyPair::generate().map_err(tls_err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(tls_err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "berth integration test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(tls_err)?;

    let key = KeyPair::generate().map_err(tls_err)?;
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .map_err(tls_err)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let cert = params.signed_by(&key, &ca_cert, &ca_key).map_err(tls_err)?;

    let files = TlsFiles {
        ca_cert_pem: ca_cert.pem(),
        ca_cert_path: dir.join("ca.pem"),
        cert_path: dir.join("cert.pem"),
        key_path: dir.join("key.pem"),
    };
    for (path, content) in [
        (&files.ca_cert_path, files.ca_cert_pem.clone()),
        (&files.cert_path, cert.pem()),
        (&files.key_path, key.serialize_pem()),
    ] {
        std::fs::write(path, content).map_err(Error::io(path))?;
    }
    Ok(files)
}

/// Writes an htpasswd file with one bcrypt entry (the only scheme the registry's
/// htpasswd auth accepts); generated with the `bcrypt` crate, no apache2-utils.
fn write_htpasswd(dir: &Path, user: &str, password: &str) -> Result<PathBuf> {
    if user.is_empty() || user.contains(':') || user.contains('\n') {
        return Err(Error::Htpasswd {
            user: user.into(),
            message: "user must be non-empty without ':' or newline".into(),
        });
    }
    // Cost 4 (the minimum) keeps every authenticated request cheap.
    let hash = bcrypt::hash(password, 4).map_err(|e| Error::Htpasswd {
        user: user.into(),
        message: e.to_string(),
    })?;
    let path = dir.join("htpasswd");
    std::fs::write(&path, format!("{user}:{hash}\n")).map_err(Error::io(&path))?;
    Ok(path)
}

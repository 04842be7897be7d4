//! The harness's one error type.

use std::path::PathBuf;

/// Everything that can go wrong while preparing or driving an end-to-end test.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("io error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("spawn {program}: {source}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} did not become ready within {seconds}s; log:\n{log}")]
    NotReady {
        what: String,
        seconds: u64,
        log: String,
    },
    #[error("{what} exited early with {status}; log:\n{log}")]
    ExitedEarly {
        what: String,
        status: std::process::ExitStatus,
        log: String,
    },
    #[error("berthd binary not found: {0}")]
    BerthdNotFound(String),
    #[error("image build {image}: {message}")]
    Build { image: String, message: String },
    #[error("registry request {method} {url}: {source}")]
    Http {
        method: &'static str,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("registry request {method} {url}: unexpected status {status}: {body}")]
    Status {
        method: &'static str,
        url: String,
        status: u16,
        body: String,
    },
    #[error("registry response for {url}: {message}")]
    BadResponse { url: String, message: String },
    #[error("tls material: {0}")]
    Tls(String),
    #[error("htpasswd for user {user}: {message}")]
    Htpasswd { user: String, message: String },
    #[error("grpc connect to {path}: {source}")]
    Connect {
        path: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("signal pid {pid}: {source}")]
    Signal {
        pid: i32,
        #[source]
        source: nix::Error,
    },
    #[error("{rpc}: {status}")]
    Rpc {
        rpc: &'static str,
        status: Box<tonic::Status>,
    },
    #[error("crash run: {0}")]
    Crash(String),
    #[error("{command}: {message}")]
    Command { command: String, message: String },
    #[error("json for {what}: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Result with the harness error.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps an io error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }

    /// Wraps a failed CRI call with the RPC's name.
    pub fn rpc(rpc: &'static str) -> impl FnOnce(tonic::Status) -> Error {
        move |status| Error::Rpc {
            rpc,
            status: Box::new(status),
        }
    }
}

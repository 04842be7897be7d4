//! The one error type of berth-runtime.

use std::path::PathBuf;

/// Everything that can go wrong while running a container.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The OCI spec is unusable; `field` is a JSON path such as `linux.namespaces[2].path`.
    #[error("{field}: {msg}")]
    InvalidSpec { field: String, msg: String },
    /// A command-line or API argument is unusable.
    #[error("invalid argument {name}: {msg}")]
    InvalidArgument { name: String, msg: String },
    /// A kernel call failed; `op` names it and what it acted on.
    #[error("{op}: {source}")]
    Sys {
        op: String,
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A state or exit file exists but cannot be parsed.
    #[error("{path}: corrupt state file: {msg}")]
    CorruptState { path: PathBuf, msg: String },
    /// No container state in this directory.
    #[error("container state {0} not found")]
    NotFound(PathBuf),
    /// The container is in a state that does not allow the operation.
    #[error("container {id}: cannot {op} a container that is {status}")]
    BadState {
        id: String,
        op: &'static str,
        status: String,
    },
    /// A cgroup operation failed.
    #[error("cgroup {path}: {msg}")]
    Cgroup { path: PathBuf, msg: String },
    /// The container process reported a failure while setting itself up.
    #[error("{0}")]
    Init(String),
    /// A feature the spec asks for is not available on this host or not implemented.
    #[error("{field}: {msg}")]
    Unsupported { field: String, msg: String },
    /// Waiting for something timed out.
    #[error("timed out waiting for {0}")]
    Timeout(String),
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Coarse classes of [`Error`], for mapping to gRPC codes mechanically.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad spec or argument (INVALID_ARGUMENT).
    InvalidArgument,
    /// No such container (NOT_FOUND).
    NotFound,
    /// Wrong lifecycle state for the operation (FAILED_PRECONDITION).
    FailedPrecondition,
    /// Asked for something this host or berth cannot do (UNIMPLEMENTED).
    Unimplemented,
    /// Timed out (DEADLINE_EXCEEDED).
    Timeout,
    /// Kernel or I/O failure (INTERNAL).
    Internal,
}

impl ErrorKind {
    /// Every kind.
    pub const ALL: [ErrorKind; 6] = [
        ErrorKind::InvalidArgument,
        ErrorKind::NotFound,
        ErrorKind::FailedPrecondition,
        ErrorKind::Unimplemented,
        ErrorKind::Timeout,
        ErrorKind::Internal,
    ];

    /// A stable name, for the monitor's failure line (`monitor::failure`).
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "invalid-argument",
            ErrorKind::NotFound => "not-found",
            ErrorKind::FailedPrecondition => "failed-precondition",
            ErrorKind::Unimplemented => "unimplemented",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Internal => "internal",
        }
    }

    /// The kind called `name`.
    pub fn from_name(name: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl Error {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidSpec { .. } | Error::InvalidArgument { .. } => ErrorKind::InvalidArgument,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::BadState { .. } => ErrorKind::FailedPrecondition,
            Error::Unsupported { .. } => ErrorKind::Unimplemented,
            Error::Timeout(_) => ErrorKind::Timeout,
            Error::Sys { .. }
            | Error::Io { .. }
            | Error::CorruptState { .. }
            | Error::Cgroup { .. }
            | Error::Init(_) => ErrorKind::Internal,
        }
    }

    /// Builds an [`Error::InvalidSpec`].
    pub fn spec(field: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::InvalidSpec {
            field: field.into(),
            msg: msg.into(),
        }
    }

    /// Builds an [`Error::Sys`].
    pub fn sys(op: impl Into<String>, source: std::io::Error) -> Self {
        Error::Sys {
            op: op.into(),
            source,
        }
    }

    /// Builds an [`Error::Io`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

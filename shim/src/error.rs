//! The one error type of berth-shim. Every RPC body returns `Result<T, Error>`;
//! `cri::service` turns it into a `tonic::Status` through `From<Error>`, so the
//! mapping to gRPC codes lives in exactly one place ([`Error::code`]).

use std::path::PathBuf;

/// Result alias used across the shim.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in berthd. Messages are lower-case and name the
/// field, object id or path involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is missing or malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The named pod, container or image does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A name or id is already taken.
    #[error("{0}")]
    AlreadyExists(String),
    /// The object is in the wrong state for the request.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The RPC or option is not built yet.
    #[error("{0}")]
    Unimplemented(String),
    /// A deadline or timeout ran out.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// Registry credentials are missing or wrong.
    #[error("{0}")]
    Unauthenticated(String),
    /// The registry or kernel refused the operation.
    #[error("{0}")]
    PermissionDenied(String),
    /// berthd is not ready (start-up recovery still running).
    #[error("{0}")]
    Unavailable(String),
    /// A file-system operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What we were doing, e.g. "create directory".
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The metadata store failed.
    #[error("metadata store: {0}")]
    Store(String),
    /// The container runtime failed.
    #[error("runtime: {0}")]
    Runtime(String),
    /// Anything else that is our fault.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// Builds an [`Error::Io`] from an operation name and path; use with `map_err`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }

    /// The gRPC code this error maps to.
    pub fn code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::NotFound(_) => Code::NotFound,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::Unimplemented(_) => Code::Unimplemented,
            Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::Unavailable(_) => Code::Unavailable,
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Code::NotFound
            }
            Error::Io { .. } | Error::Store(_) | Error::Runtime(_) | Error::Internal(_) => {
                Code::Internal
            }
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        tonic::Status::new(e.code(), e.to_string())
    }
}

impl From<redb::Error> for Error {
    fn from(e: redb::Error) -> Self {
        Error::Store(e.to_string())
    }
}

macro_rules! redb_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self { Error::Store(e.to_string()) }
        }
    )*};
}
redb_errors!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

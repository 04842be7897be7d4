//! The one error type of berth-shim. Every RPC body returns `Result<T, Error>`;
//! `cri::service` turns it into a `tonic::Status` through `From<Error>`, so the
//! mapping to gRPC codes lives in exactly one place ([`Error::code`]).
//!
//! Errors keep what failed and why ([`Error::Io`] its operation, path and OS
//! error; [`Error::RuntimeCall`] the runtime library's own error) and are
//! classified only there: an `ENOENT` berthd meets on its own files is its
//! fault (INTERNAL), not the caller's NOT_FOUND, and a runtime error's code
//! is the one the runtime chose ([`berth_runtime::Error::kind`]). A code that
//! was decided before (berthd's reply read by the CLI, the outcome of the
//! create call a kubelet retry waited for) travels as [`Error::Status`].

use std::path::PathBuf;

use berth_runtime::ErrorKind as RuntimeKind;

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
    /// The container runtime failed (a `berth-monitor` run, a monitor's socket).
    #[error("runtime: {0}")]
    Runtime(String),
    /// A call into the runtime library failed; the runtime's error names the
    /// operation and its [`kind`](berth_runtime::Error::kind) picks the code.
    #[error("{}", runtime_message(.0))]
    RuntimeCall(#[from] berth_runtime::Error),
    /// An error whose code was chosen elsewhere: berthd's reply (read by the
    /// CLI) or the outcome of another call (a retried create).
    #[error("{message}")]
    Status {
        /// The code as it was chosen.
        code: tonic::Code,
        /// The message that came with it.
        message: String,
    },
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
            Error::RuntimeCall(e) => runtime_code(e.kind()),
            Error::Status { code, .. } => *code,
            // Files berthd keeps are its own business: a missing one is an
            // internal failure, whatever the OS error.
            Error::Io { .. } | Error::Store(_) | Error::Runtime(_) | Error::Internal(_) => {
                Code::Internal
            }
        }
    }
}

/// The gRPC code of a runtime error's class, whether it came from a library
/// call or across the monitor's process boundary.
pub(crate) fn runtime_code(kind: RuntimeKind) -> tonic::Code {
    use tonic::Code;
    match kind {
        RuntimeKind::InvalidArgument => Code::InvalidArgument,
        RuntimeKind::NotFound => Code::NotFound,
        RuntimeKind::FailedPrecondition => Code::FailedPrecondition,
        RuntimeKind::Unimplemented => Code::Unimplemented,
        RuntimeKind::Timeout => Code::DeadlineExceeded,
        RuntimeKind::Internal => Code::Internal,
    }
}

/// A runtime error as the caller sees it: prefixed with `runtime:` when it is
/// the runtime's own failure, bare when it names the caller's mistake.
fn runtime_message(e: &berth_runtime::Error) -> String {
    match e.kind() {
        RuntimeKind::Internal => format!("runtime: {e}"),
        _ => e.to_string(),
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        tonic::Status::new(e.code(), e.to_string())
    }
}

impl From<tonic::Status> for Error {
    /// berthd's (or a registry's gRPC peer's) answer, code kept as sent; a
    /// code the shim never produces itself is named in the message.
    fn from(s: tonic::Status) -> Self {
        use tonic::Code;
        let code = s.code();
        let message = match code {
            Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::FailedPrecondition
            | Code::Unimplemented
            | Code::DeadlineExceeded
            | Code::Unauthenticated
            | Code::PermissionDenied
            | Code::Unavailable => s.message().to_string(),
            other => format!("{other:?}: {}", s.message()),
        };
        Error::Status { code, message }
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

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn enoent() -> std::io::Error {
        std::io::Error::from_raw_os_error(libc::ENOENT)
    }

    #[test]
    fn an_enoent_on_berthds_own_files_is_internal_not_not_found() {
        let e = Error::io(
            "read bundle config",
            "/var/lib/berth/containers/x/config.json",
        )(enoent());
        assert_eq!(e.code(), Code::Internal);
        let status = tonic::Status::from(e);
        assert_eq!(status.code(), Code::Internal);
        assert!(
            status
                .message()
                .starts_with("read bundle config /var/lib/berth"),
            "{status:?}"
        );
    }

    #[test]
    fn runtime_errors_get_the_code_of_their_kind() {
        use berth_runtime::Error as R;
        let cases = [
            (
                R::spec("process.args", "empty"),
                Code::InvalidArgument,
                "process.args: empty",
            ),
            (
                R::NotFound("/run/berth/c/x".into()),
                Code::NotFound,
                "container state /run/berth/c/x not found",
            ),
            (
                R::BadState {
                    id: "x".into(),
                    op: "start",
                    status: "stopped".into(),
                },
                Code::FailedPrecondition,
                "container x: cannot start a container that is stopped",
            ),
            (
                R::Unsupported {
                    field: "linux.intelRdt".into(),
                    msg: "no".into(),
                },
                Code::Unimplemented,
                "linux.intelRdt: no",
            ),
            (
                R::Timeout("init".into()),
                Code::DeadlineExceeded,
                "timed out waiting for init",
            ),
            // An ENOENT inside the runtime is still the runtime's failure.
            (
                R::io("/run/berth/c/x/state.json", enoent()),
                Code::Internal,
                "runtime: /run/berth",
            ),
            (
                R::sys("setns", enoent()),
                Code::Internal,
                "runtime: setns: ",
            ),
        ];
        for (e, code, msg) in cases {
            let status = tonic::Status::from(Error::from(e));
            assert_eq!(status.code(), code, "{status:?}");
            assert!(status.message().starts_with(msg), "{status:?}");
        }
    }

    #[test]
    fn a_relayed_status_keeps_its_code_and_names_codes_the_shim_never_makes() {
        for code in [Code::AlreadyExists, Code::Unavailable, Code::NotFound] {
            let e = Error::from(tonic::Status::new(code, "m"));
            assert_eq!((e.code(), e.to_string().as_str()), (code, "m"));
        }
        let e = Error::from(tonic::Status::new(Code::ResourceExhausted, "full"));
        assert_eq!(e.code(), Code::ResourceExhausted);
        assert_eq!(e.to_string(), "ResourceExhausted: full");
        let back = tonic::Status::from(Error::from(tonic::Status::new(Code::Aborted, "x")));
        assert_eq!(back.code(), Code::Aborted);
    }
}

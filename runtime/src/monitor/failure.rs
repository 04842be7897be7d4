//! How `berth-monitor` reports a failure across the process boundary so the
//! caller keeps the error's class: one stderr line `[<kind>] <message>`, the
//! kind being [`ErrorKind::name`]. berthd maps the kind to a gRPC code the
//! same way it maps a library error, so a bad spec the monitor finds is
//! INVALID_ARGUMENT for the kubelet, not INTERNAL.

use crate::error::{Error, ErrorKind};

/// The failure line for `e`.
pub fn encode(e: &Error) -> String {
    encode_kind(e.kind(), &e.to_string())
}

/// The failure line for a message of class `kind`.
pub fn encode_kind(kind: ErrorKind, msg: &str) -> String {
    format!("[{}] {msg}", kind.name())
}

/// The class and message of a failure line; a line without a known class is
/// an internal failure (a crash, or an older monitor).
pub fn decode(line: &str) -> (ErrorKind, &str) {
    line.strip_prefix('[')
        .and_then(|rest| rest.split_once("] "))
        .and_then(|(name, msg)| ErrorKind::from_name(name).map(|k| (k, msg)))
        .unwrap_or((ErrorKind::Internal, line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_and_anything_else_is_internal() {
        for kind in ErrorKind::ALL {
            let line = encode_kind(kind, "linux.devices[0]: bad");
            assert_eq!(decode(&line), (kind, "linux.devices[0]: bad"), "{line}");
        }
        let e = Error::spec("process.args", "empty");
        assert_eq!(decode(&encode(&e)).0, ErrorKind::InvalidArgument);
        assert_eq!(decode("segfault"), (ErrorKind::Internal, "segfault"));
        assert_eq!(decode("[bogus] x"), (ErrorKind::Internal, "[bogus] x"));
    }
}

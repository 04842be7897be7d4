//! What the error stream carries when a remote command ends, and the protocol
//! names clients negotiate.
//!
//! From `v4.channel.k8s.io` on, the error stream carries a Kubernetes `Status`
//! object as JSON (field order as Go's encoder writes it); older protocols
//! carry nothing on success and the bare message on failure.

use serde::Serialize;

/// Remote-command stream protocols over SPDY, in the server's preference order.
pub const SPDY_REMOTE_COMMAND_PROTOCOLS: &[&str] = &[
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];
/// Remote-command subprotocols over WebSocket.
pub const WS_REMOTE_COMMAND_PROTOCOLS: &[&str] = &[
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
    "channel.k8s.io",
    "base64.channel.k8s.io",
];
/// Port-forward protocol over SPDY.
pub const SPDY_PORT_FORWARD_PROTOCOLS: &[&str] = &["portforward.k8s.io"];
/// Port-forward subprotocols over WebSocket.
pub const WS_PORT_FORWARD_PROTOCOLS: &[&str] = &["v4.channel.k8s.io", "v4.base64.channel.k8s.io"];

/// How a remote command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Exit code 0, or an attach that ended.
    Success,
    /// The command exited non-zero.
    ExitCode {
        /// The command, for the message.
        cmd: Vec<String>,
        /// Its exit code.
        code: i32,
    },
    /// Starting or running the command failed.
    Internal(String),
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct Cause {
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    message: String,
}

#[derive(Serialize)]
struct Details {
    causes: Vec<Cause>,
}

#[derive(Serialize)]
struct Status {
    metadata: Empty,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Details>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u16>,
}

impl Outcome {
    fn message(&self) -> Option<String> {
        match self {
            Outcome::Success => None,
            Outcome::ExitCode { cmd, code } => Some(format!(
                "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
                cmd.join(" ")
            )),
            Outcome::Internal(msg) => Some(format!("Internal error occurred: {msg}")),
        }
    }

    /// The `v4.channel.k8s.io` (and later) error-stream payload.
    pub fn to_json(&self) -> Vec<u8> {
        let status = match self {
            Outcome::Success => Status {
                metadata: Empty {},
                status: "Success",
                message: None,
                reason: None,
                details: None,
                code: None,
            },
            Outcome::ExitCode { code, .. } => Status {
                metadata: Empty {},
                status: "Failure",
                message: self.message(),
                reason: Some("NonZeroExitCode"),
                details: Some(Details {
                    causes: vec![Cause {
                        reason: Some("ExitCode"),
                        message: code.to_string(),
                    }],
                }),
                code: None,
            },
            Outcome::Internal(msg) => Status {
                metadata: Empty {},
                status: "Failure",
                message: self.message(),
                reason: Some("InternalError"),
                details: Some(Details {
                    causes: vec![Cause {
                        reason: None,
                        message: msg.clone(),
                    }],
                }),
                code: Some(500),
            },
        };
        serde_json::to_vec(&status).expect("status serialises")
    }

    /// The payload for protocols before v4: nothing on success, the message otherwise.
    pub fn to_text(&self) -> Option<Vec<u8>> {
        self.message().map(String::into_bytes)
    }
}

/// The first protocol the client offers that the server supports (the
/// client's order wins, as in Kubernetes' handshake). Values may be repeated
/// headers or comma-separated.
pub fn negotiate<'a>(
    offered: impl IntoIterator<Item = &'a str>,
    supported: &[&'static str],
) -> Option<&'static str> {
    offered
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find_map(|o| supported.iter().copied().find(|s| *s == o))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_json_matches_what_kubectl_parses() {
        assert_eq!(
            String::from_utf8(Outcome::Success.to_json()).unwrap(),
            r#"{"metadata":{},"status":"Success"}"#
        );
        let failed = Outcome::ExitCode {
            cmd: vec!["sh".into(), "-c".into(), "exit 3".into()],
            code: 3,
        };
        assert_eq!(
            String::from_utf8(failed.to_json()).unwrap(),
            r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#
        );
        let v: serde_json::Value =
            serde_json::from_slice(&Outcome::Internal("boom".into()).to_json()).unwrap();
        assert_eq!(v["reason"], "InternalError");
        assert_eq!(v["code"], 500);
        assert_eq!(v["details"]["causes"][0]["message"], "boom");
    }

    #[test]
    fn old_protocols_get_plain_text_only_on_failure() {
        assert_eq!(Outcome::Success.to_text(), None);
        let t = Outcome::ExitCode {
            cmd: vec!["false".into()],
            code: 1,
        }
        .to_text()
        .unwrap();
        assert!(String::from_utf8(t).unwrap().ends_with("exit code 1"));
    }

    #[test]
    fn negotiation_takes_the_clients_first_supported_protocol() {
        let p = SPDY_REMOTE_COMMAND_PROTOCOLS;
        assert_eq!(
            negotiate(["v5.channel.k8s.io", "v3.channel.k8s.io"], p),
            Some("v3.channel.k8s.io")
        );
        assert_eq!(
            negotiate(["v9, v2.channel.k8s.io"], p),
            Some("v2.channel.k8s.io")
        );
        assert_eq!(negotiate(["bogus"], p), None);
        assert_eq!(negotiate([], p), None);
    }
}

//! The `berth` operator CLI: crictl's verbs, flags and output shapes, so an
//! operator's habits carry over. Each verb lives in its own function; global
//! flags match crictl's (`-r/--runtime-endpoint`, `CONTAINER_RUNTIME_ENDPOINT`,
//! `-t/--timeout`).

use std::time::Duration;

use berth_proto::v1::{StatusRequest, VersionRequest};
use clap::{Parser, Subcommand};

use crate::{client, error::Result};

/// The default CRI endpoint of berthd.
pub const DEFAULT_ENDPOINT: &str = "unix:///run/berth/berth.sock";

/// Operator CLI for the Berth container runtime (crictl-compatible verbs).
#[derive(Parser, Debug)]
#[command(name = "berth", version)]
pub struct Cli {
    /// Container runtime endpoint.
    #[arg(short = 'r', long, env = "CONTAINER_RUNTIME_ENDPOINT", default_value = DEFAULT_ENDPOINT, global = true)]
    pub runtime_endpoint: String,
    /// Image service endpoint (defaults to the runtime endpoint).
    #[arg(short = 'i', long, env = "IMAGE_SERVICE_ENDPOINT", global = true)]
    pub image_endpoint: Option<String>,
    /// Timeout for connecting and for each call, e.g. 2s, 500ms.
    #[arg(short = 't', long, default_value = "2s", value_parser = parse_duration, global = true)]
    pub timeout: Duration,
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Display runtime version information.
    Version,
    /// Display information of the container runtime.
    Info {
        /// Output format: json or yaml.
        #[arg(short = 'o', long, default_value = "json")]
        output: String,
        /// Only print the runtime conditions (no verbose info).
        #[arg(short = 'q', long)]
        quiet: bool,
    },
}

/// Parses `2s`, `500ms`, `1m` or a bare number of seconds.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("invalid duration unit in {s:?} (use ms, s, m, h)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// Runs one CLI invocation, writing to stdout.
pub async fn run(cli: Cli) -> Result<()> {
    let mut cri = client::connect(&cli.runtime_endpoint, cli.timeout).await?;
    match cli.command {
        Command::Version => {
            let v = cri
                .runtime
                .version(VersionRequest {
                    version: "v1".into(),
                })
                .await?
                .into_inner();
            println!("Version:  {}", v.version);
            println!("RuntimeName:  {}", v.runtime_name);
            println!("RuntimeVersion:  {}", v.runtime_version);
            println!("RuntimeApiVersion:  {}", v.runtime_api_version);
        }
        Command::Info { output, quiet } => {
            let s = cri
                .runtime
                .status(StatusRequest { verbose: !quiet })
                .await?
                .into_inner();
            let conditions: Vec<_> = s
                .status
                .unwrap_or_default()
                .conditions
                .into_iter()
                .map(|c| {
                    serde_json::json!({"type": c.r#type, "status": c.status, "reason": c.reason, "message": c.message})
                })
                .collect();
            let mut doc = serde_json::Map::new();
            doc.insert(
                "status".into(),
                serde_json::json!({ "conditions": conditions }),
            );
            // Verbose values are JSON documents; show them inline as crictl does.
            let mut keys: Vec<_> = s.info.keys().cloned().collect();
            keys.sort();
            for k in keys {
                let raw = &s.info[&k];
                let v = serde_json::from_str(raw).unwrap_or(serde_json::Value::String(raw.clone()));
                doc.insert(k, v);
            }
            print_doc(&serde_json::Value::Object(doc), &output)?;
        }
    }
    Ok(())
}

fn print_doc(doc: &serde_json::Value, format: &str) -> Result<()> {
    use crate::error::Error;
    match format {
        "json" => println!(
            "{}",
            serde_json::to_string_pretty(doc).map_err(|e| Error::Internal(e.to_string()))?
        ),
        "yaml" => print!(
            "{}",
            serde_yaml::to_string(doc).map_err(|e| Error::Internal(e.to_string()))?
        ),
        other => {
            return Err(Error::InvalidArgument(format!(
                "output: {other:?} is not one of json, yaml"
            )))
        }
    }
    Ok(())
}

impl From<tonic::Status> for crate::error::Error {
    fn from(s: tonic::Status) -> Self {
        use crate::error::Error;
        use tonic::Code;
        let msg = s.message().to_string();
        match s.code() {
            Code::InvalidArgument => Error::InvalidArgument(msg),
            Code::NotFound => Error::NotFound(msg),
            Code::AlreadyExists => Error::AlreadyExists(msg),
            Code::FailedPrecondition => Error::FailedPrecondition(msg),
            Code::Unimplemented => Error::Unimplemented(msg),
            Code::DeadlineExceeded => Error::DeadlineExceeded(msg),
            Code::Unauthenticated => Error::Unauthenticated(msg),
            Code::PermissionDenied => Error::PermissionDenied(msg),
            Code::Unavailable => Error::Unavailable(msg),
            code => Error::Internal(format!("{code:?}: {msg}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_crictl() {
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("2x").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn endpoint_flag_and_env_var() {
        let cli = Cli::try_parse_from(["berth", "-r", "unix:///tmp/x.sock", "version"]).unwrap();
        assert_eq!(cli.runtime_endpoint, "unix:///tmp/x.sock");
        let cli =
            Cli::try_parse_from(["berth", "version", "--runtime-endpoint", "/tmp/y.sock"]).unwrap();
        assert_eq!(cli.runtime_endpoint, "/tmp/y.sock");
    }
}

//! The `berth` operator CLI: crictl's verbs, flags and output shapes, so an
//! operator's habits carry over. This file holds the clap definitions and the
//! dispatch; each verb group lives in its own module. Global flags match
//! crictl's (`-r/--runtime-endpoint`, `CONTAINER_RUNTIME_ENDPOINT`,
//! `-i/--image-endpoint`, `-t/--timeout`); as with crictl, `-i` and `-t` go
//! before the verb, since several verbs use those letters themselves.

mod attach;
mod config_file;
mod containers;
mod defaults;
mod events;
mod exec;
mod images;
mod inspect;
mod list;
mod logs;
mod output;
mod pods;
mod port_forward;
mod stats;
mod terminal;

use std::time::Duration;

use berth_proto::v1::{StatusRequest, VersionRequest};
use clap::{Args, Parser, Subcommand};

use crate::client::{self, CriClient};
use crate::error::{Error, Result};

pub use config_file::{load_container_config, load_pod_config};

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
    #[arg(short = 'i', long, env = "IMAGE_SERVICE_ENDPOINT")]
    pub image_endpoint: Option<String>,
    /// Timeout for connecting, e.g. 2s, 500ms.
    #[arg(short = 't', long, default_value = "2s", value_parser = parse_duration)]
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
    /// List pod sandboxes.
    Pods(pods::PodsArgs),
    /// Run a new pod sandbox from a config file (JSON or YAML).
    Runp(pods::RunpArgs),
    /// Stop one or more pod sandboxes.
    Stopp(pods::StoppArgs),
    /// Remove one or more pod sandboxes.
    Rmp(pods::RmpArgs),
    /// List containers.
    Ps(containers::PsArgs),
    /// Create a container in a pod sandbox.
    Create(containers::CreateArgs),
    /// Run a pod sandbox and a container in it, and start the container.
    Run(containers::RunArgs),
    /// Start one or more created containers.
    Start(containers::StartArgs),
    /// Stop one or more running containers.
    Stop(containers::StopArgs),
    /// Remove one or more containers.
    Rm(containers::RmArgs),
    /// List images.
    #[command(alias = "image")]
    Images(images::ImagesArgs),
    /// Pull an image from a registry.
    Pull(images::PullArgs),
    /// Remove one or more images.
    Rmi(images::RmiArgs),
    /// Show the image filesystem usage.
    Imagefsinfo(OutputArgs),
    /// Show the status of one or more containers.
    Inspect(inspect::InspectArgs),
    /// Show the status of one or more pod sandboxes.
    Inspectp(inspect::InspectArgs),
    /// Show the status of one or more images.
    Inspecti(inspect::InspectArgs),
    /// Fetch the logs of a container.
    Logs(logs::LogsArgs),
    /// Run a command in a running container.
    Exec(exec::ExecArgs),
    /// Attach to a running container.
    Attach(attach::AttachArgs),
    /// Forward local ports to a pod sandbox.
    PortForward(port_forward::PortForwardArgs),
    /// Show container resource usage.
    Stats(stats::StatsArgs),
    /// Show pod sandbox resource usage.
    Statsp(stats::StatspArgs),
    /// Stream container events.
    Events(OutputArgs),
}

/// `-o json|yaml` for verbs that print one document.
#[derive(Args, Debug)]
pub struct OutputArgs {
    /// Output format: json or yaml.
    #[arg(short = 'o', long, default_value = "json")]
    pub output: String,
}

/// Filters shared by list verbs: `--label k=v`, repeated.
pub(crate) fn parse_labels(labels: &[String]) -> Result<std::collections::HashMap<String, String>> {
    labels
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(Error::InvalidArgument(format!(
                "label: {l:?} is not of the form key=value"
            ))),
        })
        .collect()
}

/// Parses `2s`, `500ms`, `1m`, `1h30m` or a bare number of seconds.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    if s.is_empty() {
        return Err("invalid duration \"\"".into());
    }
    let mut rest = s;
    let mut total = 0f64;
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(split);
        let n: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        total += match unit {
            "ns" => n / 1e9,
            "us" | "µs" => n / 1e6,
            "ms" => n / 1000.0,
            "s" | "" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            _ => return Err(format!("invalid duration unit in {s:?} (use ms, s, m, h)")),
        };
        rest = tail;
    }
    Ok(Duration::from_secs_f64(total))
}

/// Runs one CLI invocation, writing to stdout; returns the process exit code.
pub async fn run(cli: Cli) -> Result<i32> {
    let mut cri = client::connect(&cli.runtime_endpoint, cli.timeout).await?;
    if let Some(image_endpoint) = &cli.image_endpoint {
        cri.image = client::connect(image_endpoint, cli.timeout).await?.image;
    }
    dispatch(&mut cri, cli.command).await
}

async fn dispatch(cri: &mut CriClient, command: Command) -> Result<i32> {
    match command {
        Command::Version => version(cri).await?,
        Command::Info { output, quiet } => info(cri, &output, quiet).await?,
        Command::Pods(a) => pods::list(cri, a).await?,
        Command::Runp(a) => pods::runp(cri, a).await?,
        Command::Stopp(a) => pods::stopp(cri, a).await?,
        Command::Rmp(a) => pods::rmp(cri, a).await?,
        Command::Ps(a) => containers::ps(cri, a).await?,
        Command::Create(a) => containers::create(cri, a).await?,
        Command::Run(a) => containers::run(cri, a).await?,
        Command::Start(a) => containers::start(cri, a).await?,
        Command::Stop(a) => containers::stop(cri, a).await?,
        Command::Rm(a) => containers::rm(cri, a).await?,
        Command::Images(a) => images::list(cri, a).await?,
        Command::Pull(a) => images::pull(cri, a).await?,
        Command::Rmi(a) => images::rmi(cri, a).await?,
        Command::Imagefsinfo(a) => images::fs_info(cri, &a.output).await?,
        Command::Inspect(a) => inspect::container(cri, a).await?,
        Command::Inspectp(a) => inspect::pod(cri, a).await?,
        Command::Inspecti(a) => inspect::image(cri, a).await?,
        Command::Logs(a) => logs::logs(cri, a).await?,
        Command::Exec(a) => return exec::exec(cri, a).await,
        Command::Attach(a) => return attach::attach(cri, a).await,
        Command::PortForward(a) => return port_forward::port_forward(cri, a).await,
        Command::Stats(a) => stats::stats(cri, a).await?,
        Command::Statsp(a) => stats::statsp(cri, a).await?,
        Command::Events(a) => events::events(cri, &a.output).await?,
    }
    Ok(0)
}

async fn version(cri: &mut CriClient) -> Result<()> {
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
    Ok(())
}

async fn info(cri: &mut CriClient, format: &str, quiet: bool) -> Result<()> {
    let s = cri
        .runtime
        .status(StatusRequest { verbose: !quiet })
        .await?
        .into_inner();
    let mut doc = serde_json::Map::new();
    doc.insert(
        "status".into(),
        output::to_value(&s.status.unwrap_or_default())?,
    );
    // Verbose values are JSON documents; show them inline as crictl does.
    for (k, v) in inspect::inline_info(&s.info) {
        doc.insert(k, v);
    }
    output::print_doc(&serde_json::Value::Object(doc), format)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_crictl() {
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        parse_duration("2x").unwrap_err();
        parse_duration("s").unwrap_err();
        parse_duration("").unwrap_err();
    }

    #[test]
    fn endpoint_flag_and_env_var() {
        let cli = Cli::try_parse_from(["berth", "-r", "unix:///tmp/x.sock", "version"]).unwrap();
        assert_eq!(cli.runtime_endpoint, "unix:///tmp/x.sock");
        let cli =
            Cli::try_parse_from(["berth", "version", "--runtime-endpoint", "/tmp/y.sock"]).unwrap();
        assert_eq!(cli.runtime_endpoint, "/tmp/y.sock");
    }

    #[test]
    fn verb_flags_parse_like_crictl() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["berth", "-t", "5s", "stop", "-t", "3", "abc"]).unwrap();
        assert_eq!(cli.timeout, Duration::from_secs(5));
        match cli.command {
            Command::Stop(a) => {
                assert_eq!(a.timeout, 3);
                assert_eq!(a.ids, ["abc"]);
            }
            other => panic!("{other:?}"),
        }
        let cli =
            Cli::try_parse_from(["berth", "exec", "-s", "abc", "sh", "-c", "exit 3"]).unwrap();
        match cli.command {
            Command::Exec(a) => {
                assert!(a.sync);
                assert_eq!(a.id, "abc");
                assert_eq!(a.cmd, ["sh", "-c", "exit 3"]);
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(["berth", "exec", "-it", "abc", "sh"]).unwrap();
        match cli.command {
            Command::Exec(a) => {
                assert!(a.interactive && a.tty && !a.sync);
                assert_eq!(a.transport, crate::streaming::client::Transport::Spdy);
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(["berth", "attach", "-i", "--transport", "websocket", "c"])
            .unwrap();
        match cli.command {
            Command::Attach(a) => {
                assert!(a.stdin && !a.tty);
                assert_eq!(a.transport, crate::streaming::client::Transport::WebSocket);
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(["berth", "port-forward", "p", "8080", ":80"]).unwrap();
        match cli.command {
            Command::PortForward(a) => {
                assert_eq!(a.address, ["localhost"]);
                assert_eq!(a.ports, ["8080", ":80"]);
            }
            other => panic!("{other:?}"),
        }
        Cli::try_parse_from(["berth", "exec", "--transport", "x", "c", "sh"]).unwrap_err();
        let cli = Cli::try_parse_from(["berth", "image", "-q"]).unwrap();
        assert!(matches!(cli.command, Command::Images(a) if a.quiet));
        parse_labels(&["a=b".into(), "c=".into()]).unwrap();
        parse_labels(&["nokey".into()]).unwrap_err();
    }
}

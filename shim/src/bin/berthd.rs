//! berthd: the Berth CRI daemon.

use std::path::PathBuf;

use anyhow::Context;
use berth_shim::config::{Config, DEFAULT_CONFIG_PATH};
use clap::{Parser, Subcommand};

/// The Berth container runtime daemon: serves the Kubernetes CRI (v1) on a unix socket.
#[derive(Parser)]
#[command(name = "berthd", version)]
struct Args {
    /// Config file [default: /etc/berth/config.toml; missing is fine unless named here].
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// CRI endpoint to serve (unix:///path). Overrides `listen`.
    #[arg(long)]
    listen: Option<String>,
    /// Persistent state directory. Overrides `root`.
    #[arg(long)]
    root: Option<PathBuf>,
    /// Volatile state directory. Overrides `state_dir`.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Log level or env-filter directive. Overrides `log_level`.
    #[arg(long)]
    log_level: Option<String>,
    /// Log format (text or json). Overrides `log_format`.
    #[arg(long)]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Print every config key with its default value.
    Default,
    /// Print the effective config (file plus flags).
    Dump,
}

fn effective_config(args: &Args) -> anyhow::Result<Config> {
    let (path, explicit) = match &args.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
    };
    let mut cfg = Config::load(&path, explicit)?;
    if let Some(v) = &args.listen {
        cfg.listen = v.clone();
    }
    if let Some(v) = &args.root {
        cfg.root = v.clone();
    }
    if let Some(v) = &args.state_dir {
        cfg.state_dir = v.clone();
    }
    if let Some(v) = &args.log_level {
        cfg.log_level = v.clone();
    }
    if let Some(v) = &args.log_format {
        cfg.log_format = v.clone();
    }
    cfg.validate()?;
    Ok(cfg)
}

fn init_logging(cfg: &Config) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log_level)
        .with_context(|| format!("log level {:?}", cfg.log_level))?;
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if cfg.log_format == "json" {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init();
    } else {
        builder.init();
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = name, "shutting down");
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    match &args.command {
        Some(Command::Config {
            action: ConfigAction::Default,
        }) => {
            print!("{}", Config::default_toml());
            return Ok(());
        }
        Some(Command::Config {
            action: ConfigAction::Dump,
        }) => {
            let cfg = effective_config(&args)?;
            print!("{}", toml::to_string_pretty(&cfg)?);
            return Ok(());
        }
        None => {}
    }
    let cfg = effective_config(&args)?;
    init_logging(&cfg)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(berth_shim::server::serve(cfg, shutdown_signal()))?;
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("berthd: {e:#}");
        std::process::exit(1);
    }
}

//! berth: the operator CLI for the Berth container runtime.

use clap::Parser;

fn main() {
    let cli = berth_shim::cli::Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth: start runtime: {e}");
            std::process::exit(1);
        }
    };
    match rt.block_on(berth_shim::cli::run(cli)) {
        // `exec` (and `attach`) pass the remote exit code through.
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("berth: {e}");
            std::process::exit(1);
        }
    }
}

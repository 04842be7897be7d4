//! `berth exec -s`: ExecSync, printing the command's output and passing its
//! exit code through. Streaming exec (`-it`, or without `-s`) needs the
//! streaming client, which the CLI does not have yet.

use std::io::Write;

use berth_proto::v1::ExecSyncRequest;
use clap::Args;

use super::pods::with_id;
use crate::client::CriClient;
use crate::error::{Error, Result};

/// `berth exec [-s] ID CMD...`.
#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Run synchronously (ExecSync); the only mode supported so far.
    #[arg(short = 's', long)]
    pub sync: bool,
    /// Timeout in seconds for a synchronous exec (0: none).
    #[arg(long, default_value_t = 0)]
    pub timeout: i64,
    /// Keep stdin open (needs the streaming client; not supported yet).
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a tty (needs the streaming client; not supported yet).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Container id.
    pub id: String,
    /// Command and arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub cmd: Vec<String>,
}

/// Runs the command; returns its exit code.
pub async fn exec_sync(cri: &mut CriClient, a: ExecArgs) -> Result<i32> {
    if a.interactive || a.tty {
        return Err(Error::Unimplemented(
            "exec -i/-t is not supported yet by the berth CLI (it needs the streaming client); use `berth exec -s` or crictl".into(),
        ));
    }
    if a.timeout < 0 {
        return Err(Error::InvalidArgument(format!(
            "timeout: {} is negative",
            a.timeout
        )));
    }
    let r = cri
        .runtime
        .exec_sync(ExecSyncRequest {
            container_id: a.id.clone(),
            cmd: a.cmd,
            timeout: a.timeout,
        })
        .await
        .map_err(|e| with_id("exec in container", &a.id, e))?
        .into_inner();
    let write = |mut w: Box<dyn Write>, data: &[u8]| {
        w.write_all(data)
            .and_then(|_| w.flush())
            .map_err(|e| Error::Internal(format!("write exec output: {e}")))
    };
    write(Box::new(std::io::stdout().lock()), &r.stdout)?;
    write(Box::new(std::io::stderr().lock()), &r.stderr)?;
    Ok(r.exit_code)
}

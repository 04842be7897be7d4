//! The `berth` CLI binary (built next to berthd) pointed at one berthd, for the
//! tests that drive the CLI as a user would.

use std::path::PathBuf;
use std::process::{Command, Output};

use crate::env::TestEnv;

/// The berth binary next to berthd, with the endpoint of one berthd.
#[derive(Clone, Debug)]
pub struct BerthCli {
    pub binary: PathBuf,
    pub endpoint: String,
}

impl BerthCli {
    /// The berth binary beside `env`'s berthd; panics if it was not built.
    pub fn for_env(env: &TestEnv) -> BerthCli {
        let binary = env.berthd.binary().with_file_name("berth");
        assert!(
            binary.is_file(),
            "{} missing: build the berth-shim bins",
            binary.display()
        );
        BerthCli {
            binary,
            endpoint: env.berthd.endpoint(),
        }
    }

    /// `berth -r <endpoint> -t 30s <args>`, not yet run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.binary);
        c.arg("-r")
            .arg(&self.endpoint)
            .args(["-t", "30s"])
            .args(args);
        c
    }

    /// Runs to completion and returns its output, whatever the exit status.
    pub fn output(&self, args: &[&str]) -> Output {
        self.command(args)
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.binary.display()))
    }

    /// Runs and insists on success; returns stdout trimmed, as the id
    /// `runp`, `create` and `run` print.
    pub fn id(&self, args: &[&str]) -> String {
        self.ok(args).trim().to_string()
    }

    /// Runs and insists on success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        crate::command::stdout_of_success(&mut self.command(args), &format!("berth {args:?}"))
    }
}

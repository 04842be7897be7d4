//! Running the workspace's other programs (built beside berthd) and scripts
//! from a test, insisting that they succeed.

use std::path::PathBuf;
use std::process::Command;

/// The workspace binary `name`, built beside the berthd in use; panics
/// naming the build command when it is missing.
pub fn built_binary(name: &str) -> PathBuf {
    let berthd = crate::berthd::berthd_binary().unwrap_or_else(|e| panic!("{e}"));
    let path = berthd.with_file_name(name);
    assert!(
        path.is_file(),
        "{} missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// Runs `cmd` to completion and returns its stdout; panics, with its exit
/// status, stdout and stderr, when it fails.
pub fn stdout_of_success(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("run {what} ({:?}): {e}", cmd.get_program()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({})\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

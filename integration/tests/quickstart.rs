//! The README's main command, `scripts/quickstart.sh`, runs to completion with
//! the binaries this build made (no package install, no release build) and
//! leaves nothing running.

use std::process::Command;

use berth_integration::{command, skip, skip_if};

#[test]
fn quickstart_script_runs_the_main_job_and_cleans_up() {
    let no_cni = (!std::path::Path::new("/usr/lib/cni/bridge").exists())
        .then(|| "containernetworking-plugins not installed".to_string());
    skip_if!(skip::first(&[
        skip::not_root(),
        skip::no_registry(),
        skip::no_busybox(),
        no_cni
    ]));
    let pusher = command::built_binary("berth-push-test-images");
    let bin = pusher.parent().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/quickstart.sh");
    let stdout = command::stdout_of_success(
        Command::new("bash")
            .arg(script)
            .env("QUICKSTART_SKIP_INSTALL", "1")
            .env("BERTH_BIN_DIR", bin),
        "quickstart",
    );
    for expected in [
        "RuntimeName:  berth",
        "Image is up to date for",
        "hello from a berth pod",
        "httpd starting",
        "hostname: quickstart",
        "quickstart: OK",
        "done: nothing left running",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected:?} missing from:\n{stdout}"
        );
    }
    // Its daemon, monitors and registry are gone.
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        assert!(!cmd.contains("/tmp/bq."), "left running: {cmd}");
    }
}

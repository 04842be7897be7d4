//! The README's main command, `scripts/quickstart.sh`, runs to completion with
//! the binaries this build made (no package install, no release build) and
//! leaves nothing running.

use std::process::Command;

use berth_integration::{berthd, skip, skip_if};

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
    let berthd = berthd::berthd_binary().unwrap();
    let bin = berthd.parent().unwrap();
    if !bin.join("berth-push-test-images").exists() {
        panic!(
            "{} missing: run `cargo build --workspace --bins` first",
            bin.join("berth-push-test-images").display()
        );
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/quickstart.sh");
    let out = Command::new("bash")
        .arg(script)
        .env("QUICKSTART_SKIP_INSTALL", "1")
        .env("BERTH_BIN_DIR", bin)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "quickstart failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
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
            "{expected:?} missing from:\n{stdout}\nstderr:\n{stderr}"
        );
    }
    // Its daemon, monitors and registry are gone.
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        assert!(!cmd.contains("/tmp/bq."), "left running: {cmd}");
    }
}

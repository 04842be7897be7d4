//! Links berth-monitor as a non-PIE executable: with no load-time relocations
//! its read-only data stays shared page cache instead of becoming private
//! copies in every monitor (about 250 KiB of resident memory per container).
//!
//! Builds `berth-monitor-serve` from `lite/` into OUT_DIR, for berth-monitor
//! to embed: a static, non-PIE executable with no libc and no standard
//! library, compiled with panic=abort. It is not a Cargo target because a
//! Cargo profile's panic strategy applies to every target and the rest of the
//! workspace unwinds (tests need it); `no_std` binaries cannot.
//!
//! Under `cargo clippy` (which runs build scripts with clippy-driver as the
//! workspace's rustc wrapper) lite is compiled through clippy-driver too, with
//! the workspace's lints, so the CI's clippy step lints it like every crate.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rustc-link-arg-bin=berth-monitor=-no-pie");
    println!("cargo:rerun-if-changed=build.rs");
    for f in [
        "lite/main.rs",
        "lite/serve.rs",
        "lite/sys.rs",
        "lite/heap.rs",
        "lite/nr.rs",
        "src/monitor/argv.rs",
        "src/monitor/attach.rs",
        "src/monitor/cri_log.rs",
        "src/monitor/rfc3339.rs",
        "src/monitor/serve_args.rs",
    ] {
        println!("cargo:rerun-if-changed={f}");
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = std::env::var("TARGET").expect("cargo sets TARGET");
    // Only clippy-driver: another wrapper (sccache, ...) would not know the
    // clippy lints below.
    println!("cargo:rerun-if-env-changed=RUSTC_WORKSPACE_WRAPPER");
    println!("cargo:rerun-if-env-changed=CLIPPY_ARGS");
    let clippy = std::env::var_os("RUSTC_WORKSPACE_WRAPPER").filter(|w| {
        PathBuf::from(w)
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("clippy-driver"))
    });
    let mut cmd = match &clippy {
        Some(driver) => {
            let mut c = Command::new(driver);
            c.arg(&rustc);
            // The workspace's [workspace.lints.*] tables; CLIPPY_ARGS (cargo
            // clippy's own `-- -D warnings`) reaches clippy-driver through
            // the environment.
            c.args(workspace_lints());
            c
        }
        None => Command::new(&rustc),
    };
    let status = cmd
        .args(["--edition", "2021", "--crate-type", "bin"])
        .args(["--crate-name", "berth_monitor_serve"])
        .args(["--target", &target])
        .args([
            "-C",
            "opt-level=s",
            "-C",
            "panic=abort",
            "-C",
            "debuginfo=0",
        ])
        .args(["-C", "strip=symbols", "-C", "relocation-model=static"])
        .args(["-C", "codegen-units=1"])
        .args(["-C", "link-arg=-nostartfiles", "-C", "link-arg=-nostdlib"])
        .args(["-C", "link-arg=-static", "-C", "link-arg=-Wl,--gc-sections"])
        // The workspace's [workspace.lints.rust], and no warnings.
        .args(["-D", "unsafe_op_in_unsafe_fn", "-D", "warnings"])
        .arg("-o")
        .arg(out.join("berth-monitor-serve"))
        .arg("lite/main.rs")
        .status()
        .expect("run rustc for lite/main.rs");
    assert!(status.success(), "building berth-monitor-serve failed");
}

/// The workspace's lint table (`[workspace.lints.rust]` and
/// `[workspace.lints.clippy]` of the root Cargo.toml) as rustc flags, so lite
/// is linted by the same list as every crate, with no second copy of it.
fn workspace_lints() -> Vec<String> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"))
        .join("../Cargo.toml");
    println!("cargo:rerun-if-changed={}", manifest.display());
    let text = std::fs::read_to_string(&manifest).expect("read the workspace Cargo.toml");
    let mut prefix = None;
    let mut flags = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            prefix = match line {
                "[workspace.lints.rust]" => Some(""),
                "[workspace.lints.clippy]" => Some("clippy::"),
                _ => None,
            };
            continue;
        }
        let (Some(prefix), Some((name, level))) = (prefix, line.split_once('=')) else {
            continue;
        };
        if name.trim_start().starts_with('#') {
            continue;
        }
        let flag = match level.trim().trim_matches('"') {
            "deny" | "forbid" => "-D",
            "warn" => "-W",
            "allow" => "-A",
            other => panic!("{}: lint {name}: unknown level {other}", manifest.display()),
        };
        flags.push(flag.to_string());
        flags.push(format!("{prefix}{}", name.trim()));
    }
    assert!(
        flags.len() >= 2,
        "no [workspace.lints] found in {}",
        manifest.display()
    );
    flags
}

//! Stamps the git commit into berthd for `berth_build_info{commit}`:
//! `$BERTH_GIT_COMMIT` when the build sets it (release images), else
//! `git rev-parse`, else "unknown" (a source tarball). Re-runs when HEAD or
//! the checked-out branch moves, so a dev build never reports a stale commit.

use std::path::Path;
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

fn main() {
    println!("cargo:rerun-if-env-changed=BERTH_GIT_COMMIT");
    let dir = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let commit = match std::env::var("BERTH_GIT_COMMIT") {
        Ok(c) if !c.is_empty() => c,
        _ => {
            // What to watch: HEAD, the ref it points at, and packed-refs (where
            // that ref lives after `git gc`). Paths git resolves, so worktrees work.
            let mut watch = vec!["HEAD".to_string(), "packed-refs".to_string()];
            if let Some(r) = git(&dir, &["symbolic-ref", "-q", "HEAD"]) {
                watch.push(r);
            }
            for w in watch {
                if let Some(p) = git(
                    &dir,
                    &["rev-parse", "--path-format=absolute", "--git-path", &w],
                ) {
                    if Path::new(&p).exists() {
                        println!("cargo:rerun-if-changed={p}");
                    }
                }
            }
            git(&dir, &["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into())
        }
    };
    println!("cargo:rustc-env=BERTH_GIT_COMMIT={commit}");
}

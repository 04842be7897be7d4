//! Compiled seccomp programs kept on disk between `berth-monitor create`s.
//!
//! Compiling a profile with libseccomp costs ~10 ms for RuntimeDefault (three
//! x86 ABIs, a few hundred syscalls), more than all the rest of a create, and
//! nearly every container of a node uses one of a handful of profiles. A cache
//! entry holds its full key (the profile as JSON, the libseccomp version, the
//! kernel release and the architecture, which are everything the program
//! depends on) and is used only when the key matches byte for byte, so a hash
//! collision or an upgrade is a miss, never a wrong filter. The cache decides
//! what a container may call, so entries are only trusted in a directory that
//! the caller's user owns and nobody else can write to.

use crate::error::Result;
use crate::security;
use crate::sys::seccomp::Filter;
use oci_spec::runtime::LinuxSeccomp;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Bumped when the file layout or the key changes.
const FORMAT: &str = "berth-seccomp-cache-v1";

/// Builds the filter for `s`, from `dir` when it holds a compiled copy, else
/// compiling it and storing it there. Cache trouble is never an error: it
/// only means compiling.
pub fn build(s: &LinuxSeccomp, dir: Option<&Path>) -> Result<Filter> {
    let Some(dir) = dir else {
        return security::build_seccomp(s);
    };
    let key = key(s);
    let file = dir.join(format!("{:016x}", fnv1a(key.as_bytes())));
    if let Some(program) = load(dir, &file, &key) {
        return Ok(Filter {
            program: Some(program),
            summary: format!("default={:?} cached", s.default_action()),
        });
    }
    let filter = security::build_seccomp(s)?;
    if let Some(p) = &filter.program {
        store(dir, &file, &key, p);
    }
    Ok(filter)
}

fn key(s: &LinuxSeccomp) -> String {
    let v = libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let profile = serde_json::to_string(s).unwrap_or_default();
    format!(
        "{FORMAT}\nlibseccomp {v}\nkernel {}\narch {}\n{profile}",
        kernel.trim(),
        std::env::consts::ARCH
    )
}

/// 64-bit FNV-1a: only names the file; the key inside decides.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Whether `m` belongs to us and only we can change it.
fn private(m: &std::fs::Metadata) -> bool {
    m.uid() == nix::unistd::geteuid().as_raw() && m.mode() & 0o022 == 0
}

fn load(dir: &Path, file: &Path, key: &str) -> Option<Vec<libc::sock_filter>> {
    if !private(&std::fs::symlink_metadata(dir).ok()?) {
        return None;
    }
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(file)
        .ok()?;
    if !private(&f.metadata().ok()?) {
        return None;
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut f, &mut bytes).ok()?;
    let rest = bytes.strip_prefix(key.as_bytes())?.strip_prefix(b"\0")?;
    security::program_from_bytes(rest).ok()
}

fn store(dir: &Path, file: &Path, key: &str, program: &[libc::sock_filter]) {
    let made = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir);
    if made.is_err() || !std::fs::symlink_metadata(dir).is_ok_and(|m| private(&m)) {
        return;
    }
    let tmp: PathBuf = dir.join(format!(".{}.tmp", std::process::id()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(key.as_bytes())?;
        f.write_all(b"\0")?;
        f.write_all(&security::program_to_bytes(program))?;
        // A cache: a crash may lose the entry (a miss), the rename makes
        // sure it is never seen half written.
        std::fs::rename(&tmp, file)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn profile(errno: u32) -> LinuxSeccomp {
        serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno}]
        }))
        .unwrap()
    }

    fn program(f: &Filter) -> Vec<u8> {
        security::program_to_bytes(f.program.as_ref().unwrap())
    }

    #[test]
    fn second_build_comes_from_the_cache_and_is_the_same_program() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("seccomp");
        let first = build(&profile(1), Some(&dir)).unwrap();
        assert!(!first.summary.contains("cached"));
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let again = build(&profile(1), Some(&dir)).unwrap();
        assert!(again.summary.contains("cached"), "{}", again.summary);
        assert_eq!(program(&again), program(&first));
        // Another profile is another entry, not the cached one.
        let other = build(&profile(2), Some(&dir)).unwrap();
        assert!(!other.summary.contains("cached"));
        assert_ne!(program(&other), program(&first));
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
    }

    #[test]
    fn a_foreign_key_or_a_writable_cache_is_ignored() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("seccomp");
        let p = profile(1);
        let want = program(&build(&p, Some(&dir)).unwrap());
        let entry = std::fs::read_dir(&dir)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();

        // An entry whose key differs (a collision, an upgrade) is a miss.
        let mut bytes = std::fs::read(&entry).unwrap();
        bytes[0] ^= 1;
        std::fs::write(&entry, &bytes).unwrap();
        let f = build(&p, Some(&dir)).unwrap();
        assert!(!f.summary.contains("cached"));
        assert_eq!(program(&f), want);

        // Others could have written it: not trusted.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let f = build(&p, Some(&dir)).unwrap();
        assert!(!f.summary.contains("cached"));
        assert_eq!(program(&f), want);
    }

    #[test]
    fn no_dir_means_no_cache() {
        let f = build(&profile(1), None).unwrap();
        assert!(!f.summary.contains("cached"));
    }
}

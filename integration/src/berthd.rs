//! The real `berthd` as a child process, with its root, state dir, socket, config
//! and log in a private tempdir. Stopped and cleaned up on drop, also when the test
//! panics; the log is printed then so a failing test shows what the daemon said.
//!
//! # Finding the binary
//!
//! 1. `$BERTHD`, if set, must name the berthd executable; it is used as is.
//! 2. Otherwise it uses `<target>/<profile>/berthd` of the target dir this test
//!    executable was built in, after making sure it is current: when `berthd` or
//!    `berth-monitor` is missing or older than any file under `shim/`, `runtime/`,
//!    `proto/` (or the workspace `Cargo.toml`/`Cargo.lock`), the harness runs
//!    `cargo build --bins -p berth-shim -p berth-runtime` into that target dir once
//!    per test process. `cargo test` releases its build lock before running tests,
//!    so this nests. `BERTH_NO_BUILD=1` never builds.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::OnceLock;
use std::time::Duration;

use crate::client::Cri;
use crate::daemon::{Daemon, DaemonSpec};
use crate::error::{Error, Result};
use crate::registry::tail;

/// How long berthd may take to answer Version after start.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a SIGTERM'd berthd may take to exit before it gets SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// How to start a [`Berthd`].
#[derive(Clone, Debug)]
pub struct BerthdOptions {
    /// Extra TOML for berthd's config file (`listen`, `root` and `state_dir` are
    /// passed as flags and win over the file).
    pub config_toml: String,
    /// `--log-level`.
    pub log_level: String,
    /// Further command-line arguments.
    pub extra_args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// CNI config dir; a private empty dir (`<tempdir>/cni/net.d`) when None.
    /// This and the two below are ignored when `config_toml` has its own
    /// `[cni]` table.
    pub cni_conf_dir: Option<PathBuf>,
    /// Dirs of the test's own CNI plugins, searched before Debian's
    /// [`crate::bridge::CNI_BIN_DIR`]; berthd's default dirs when empty.
    pub cni_plugin_dirs: Vec<PathBuf>,
    /// More `key = value` lines for berthd's `[cni]` table.
    pub cni_settings: String,
}

impl Default for BerthdOptions {
    fn default() -> Self {
        BerthdOptions {
            config_toml: String::new(),
            log_level: "debug".into(),
            extra_args: Vec::new(),
            env: Vec::new(),
            cni_conf_dir: None,
            cni_plugin_dirs: Vec::new(),
            cni_settings: String::new(),
        }
    }
}

impl BerthdOptions {
    pub fn config(mut self, toml: &str) -> Self {
        self.config_toml = toml.into();
        self
    }

    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.into();
        self
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.extra_args.push(arg.into());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn cni_conf_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cni_conf_dir = Some(dir.into());
        self
    }

    /// Adds a dir of the test's own CNI plugins (see [`BerthdOptions::cni_plugin_dirs`]).
    pub fn cni_plugin_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cni_plugin_dirs.push(dir.into());
        self
    }

    /// Adds a `key = value` line to berthd's `[cni]` table.
    pub fn cni_setting(mut self, line: &str) -> Self {
        self.cni_settings.push_str(line);
        self.cni_settings.push('\n');
        self
    }
}

/// A running (or deliberately stopped) berthd.
#[derive(Debug)]
pub struct Berthd {
    // First field: its log is printed (on panic) before `dir` is removed.
    daemon: Daemon,
    binary: PathBuf,
    options: BerthdOptions,
    root: PathBuf,
    state_dir: PathBuf,
    config_path: PathBuf,
    cni_conf_dir: PathBuf,
    // Last field: removed after the processes are gone and mounts detached.
    dir: tempfile::TempDir,
}

/// Locates (building if needed) the berthd binary; see the module docs.
pub fn berthd_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("BERTHD") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(Error::BerthdNotFound(format!(
                "BERTHD={} is not a file",
                p.display()
            )))
        };
    }
    static BUILT: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(build_berthd)
        .clone()
        .map_err(Error::BerthdNotFound)
}

/// `<target>/<profile>` of the running executable: tests live in
/// `<target>/<profile>/deps/`, binaries such as berth-bench in `<target>/<profile>/`.
fn profile_dir() -> std::result::Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let dir = exe
        .parent()
        .ok_or_else(|| format!("{} has no parent", exe.display()))?;
    Ok(if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().unwrap_or(dir).to_path_buf()
    } else {
        dir.to_path_buf()
    })
}

fn build_berthd() -> std::result::Result<PathBuf, String> {
    let profile_dir = profile_dir()?;
    let candidate = profile_dir.join("berthd");
    if std::env::var_os("BERTH_NO_BUILD").is_some() {
        return if candidate.is_file() {
            Ok(candidate)
        } else {
            Err(format!(
                "{} missing and BERTH_NO_BUILD is set; run `cargo build -p berth-shim -p berth-runtime --bins` with the same CARGO_TARGET_DIR or set BERTHD",
                candidate.display()
            ))
        };
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if up_to_date(&candidate, &profile_dir.join("berth-monitor"), &workspace) {
        // Skipping cargo here matters: a build of just these packages resolves
        // features differently from `cargo test --workspace`, so running it after
        // a workspace build would relink berthd from scratch every time.
        return Ok(candidate);
    }
    let target_dir = profile_dir
        .parent()
        .ok_or_else(|| format!("{} has no parent", profile_dir.display()))?;
    let manifest = workspace.join("Cargo.toml");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "--bins", "-p", "berth-shim", "-p", "berth-runtime"])
        .arg("--manifest-path")
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", target_dir);
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(other) => {
            cmd.args(["--profile", other]);
        }
        None => {}
    }
    let out = cmd
        .output()
        .map_err(|e| format!("run cargo to build berthd: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo build of berthd failed ({}):\n{}",
            out.status,
            tail(&String::from_utf8_lossy(&out.stderr), 60)
        ));
    }
    if candidate.is_file() {
        Ok(candidate)
    } else {
        Err(format!(
            "cargo built, but {} is missing",
            candidate.display()
        ))
    }
}

/// True when both binaries exist and are newer than every source that goes into
/// them (the shim, runtime and proto crates and the workspace manifest/lock).
fn up_to_date(berthd: &Path, monitor: &Path, workspace: &Path) -> bool {
    let built = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let (Some(b), Some(m)) = (built(berthd), built(monitor)) else {
        return false;
    };
    let oldest_binary = b.min(m);
    let mut newest_source = std::time::SystemTime::UNIX_EPOCH;
    let mut stack: Vec<PathBuf> = ["shim", "runtime", "proto"]
        .iter()
        .map(|d| workspace.join(d))
        .collect();
    for f in ["Cargo.toml", "Cargo.lock"] {
        if let Some(t) = built(&workspace.join(f)) {
            newest_source = newest_source.max(t);
        }
    }
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                // Test and bench sources never go into the binaries.
                let skip = ["target", "tests", "benches", "examples"];
                if path
                    .file_name()
                    .is_some_and(|n| !skip.iter().any(|s| n == *s))
                {
                    stack.push(path);
                }
            } else if let Some(t) = built(&path) {
                newest_source = newest_source.max(t);
            }
        }
    }
    oldest_binary >= newest_source
}

impl Berthd {
    /// Starts berthd with default options and waits until it answers Version.
    pub async fn start() -> Result<Berthd> {
        Self::start_with(BerthdOptions::default()).await
    }

    /// Starts berthd with `options` and waits until it answers Version.
    pub async fn start_with(options: BerthdOptions) -> Result<Berthd> {
        let binary = berthd_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("berthd-")
            .tempdir()
            .map_err(Error::io(std::env::temp_dir()))?;
        let root = dir.path().join("root");
        let state_dir = dir.path().join("state");
        for d in [&root, &state_dir] {
            std::fs::create_dir(d).map_err(Error::io(d))?;
        }
        // Always pass a config file so the host's /etc/berth/config.toml never leaks
        // into a test, and keep CNI config and result cache out of the host's
        // /etc/cni and /var/lib unless the test brings its own [cni] table.
        let cni_conf_dir = match &options.cni_conf_dir {
            Some(d) => d.clone(),
            None => dir.path().join("cni/net.d"),
        };
        let mut config = options.config_toml.clone();
        if !config.contains("[cni]") {
            let cache = dir.path().join("cni/cache");
            for d in [&cni_conf_dir, &cache] {
                std::fs::create_dir_all(d).map_err(Error::io(d))?;
            }
            config.push_str(&format!(
                "\n[cni]\nconf_dir = \"{}\"\ncache_dir = \"{}\"\n",
                cni_conf_dir.display(),
                cache.display()
            ));
            if !options.cni_plugin_dirs.is_empty() {
                let dirs: Vec<String> = options
                    .cni_plugin_dirs
                    .iter()
                    .map(|d| d.as_path())
                    .chain([Path::new(crate::bridge::CNI_BIN_DIR)])
                    .map(|d| format!("\"{}\"", d.display()))
                    .collect();
                config.push_str(&format!("bin_dirs = [{}]\n", dirs.join(", ")));
            }
            config.push_str(&options.cni_settings);
        }
        let config_path = dir.path().join("config.toml");
        std::fs::write(&config_path, config).map_err(Error::io(&config_path))?;
        let daemon = Daemon::new(DaemonSpec {
            what: "berthd",
            socket: dir.path().join("berth.sock"),
            log_path: dir.path().join("berthd.log"),
            append_log: true,
            log_lines: 300,
            ready_timeout: READY_TIMEOUT,
            poll: Duration::from_millis(50),
        });
        let mut berthd = Berthd {
            daemon,
            binary,
            options,
            root,
            state_dir,
            config_path,
            cni_conf_dir,
            dir,
        };
        berthd.spawn_and_wait().await?;
        Ok(berthd)
    }

    async fn spawn_and_wait(&mut self) -> Result<()> {
        self.spawn()?;
        self.wait_ready().await
    }

    fn spawn(&mut self) -> Result<()> {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--listen")
            .arg(self.endpoint())
            .arg("--root")
            .arg(&self.root)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--config")
            .arg(&self.config_path)
            .arg("--log-level")
            .arg(&self.options.log_level)
            .args(&self.options.extra_args)
            .envs(self.options.env.iter().map(|(k, v)| (k, v)));
        self.daemon.spawn(&mut cmd)
    }

    /// Waits until berthd answers Version (its start-up recovery is done).
    pub async fn wait_ready(&mut self) -> Result<()> {
        self.daemon.wait_ready().await
    }

    /// Connects CRI clients to this berthd.
    pub async fn client(&self) -> Result<Cri> {
        crate::client::connect(self.daemon.socket()).await
    }

    /// The CRI socket path.
    pub fn socket_path(&self) -> &Path {
        self.daemon.socket()
    }

    /// `unix:///…/berth.sock`, as kubelet and crictl take it.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.daemon.socket().display())
    }

    /// `--root`: persistent state (metadata, content, snapshots).
    pub fn root_dir(&self) -> &Path {
        &self.root
    }

    /// `--state-dir`: volatile state (monitor sockets, namespace pins, exit files).
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The config file berthd reads.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The CNI config dir berthd reads (empty unless the test writes a conflist).
    pub fn cni_conf_dir(&self) -> &Path {
        &self.cni_conf_dir
    }

    /// The tempdir holding everything above.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The berthd executable in use.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// berthd's stdout+stderr file (appended across restarts).
    pub fn log_path(&self) -> &Path {
        self.daemon.log_path()
    }

    /// Everything berthd logged so far.
    pub fn log(&self) -> String {
        self.daemon.log()
    }

    /// The daemon's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.daemon.pid()
    }

    /// Whether the daemon process is still alive.
    pub fn is_running(&mut self) -> bool {
        self.daemon.is_running()
    }

    /// SIGTERM, wait up to [`STOP_TIMEOUT`], then SIGKILL. Returns the exit status
    /// (None if it was not running). Containers are left alone, as on a real node.
    /// Async so that client connections on this runtime can answer the daemon's
    /// GOAWAY while it drains them.
    pub async fn stop(&mut self) -> Result<Option<ExitStatus>> {
        self.daemon.stop(STOP_TIMEOUT).await
    }

    /// SIGKILL the daemon, as a crash would, and reap it. State on disk, the
    /// socket file and every container are left as they are.
    pub fn kill9(&mut self) -> Result<()> {
        self.daemon.kill()
    }

    /// Mounts whose mountinfo line names this instance's tempdir.
    pub fn mounts(&self) -> Vec<String> {
        let dir = self.dir().display().to_string();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&dir))
            .map(str::to_string)
            .collect()
    }

    /// What removed pods or containers `ids` might have left behind, with every
    /// mount of this instance (for a test that removed all it made), each named
    /// so a failure says which.
    pub fn leftovers(&self, ids: &[&str]) -> Vec<String> {
        let mut out: Vec<String> = self
            .mounts()
            .into_iter()
            .map(|m| format!("mount: {m}"))
            .collect();
        out.extend(
            self.leftovers_of(ids)
                .into_iter()
                .filter(|l| !l.starts_with("mount: ")),
        );
        out
    }

    /// What removed pods or containers `ids` left behind while other pods of
    /// this instance still run: mounts naming an id, cgroups, namespace pins,
    /// state and bundle dirs, monitor processes.
    pub fn leftovers_of(&self, ids: &[&str]) -> Vec<String> {
        let mut out: Vec<String> = self
            .mounts()
            .into_iter()
            .filter(|m| ids.iter().any(|id| m.contains(id)))
            .map(|m| format!("mount: {m}"))
            .collect();
        let controllers: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        let processes: Vec<(String, String)> = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .map(|p| {
                let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                (p.file_name().to_string_lossy().into_owned(), cmd)
            })
            .filter(|(_, cmd)| cmd.contains("berth-monitor"))
            .collect();
        for id in ids {
            for ctrl in &controllers {
                let p = ctrl.join("berth").join(id);
                if p.exists() {
                    out.push(format!("cgroup: {}", p.display()));
                }
            }
            for p in [
                self.state_dir().join("ns").join(id),
                self.state_dir().join("pods").join(id),
                self.state_dir().join("c").join(id),
                self.root_dir().join("containers").join(id),
            ] {
                if p.exists() {
                    out.push(format!("path: {}", p.display()));
                }
            }
            for (pid, cmd) in &processes {
                if cmd.contains(id) {
                    out.push(format!("process {pid}: {cmd}"));
                }
            }
        }
        out
    }

    /// Stops berthd (gracefully if it runs; after [`Berthd::kill9`] it just
    /// starts) and starts it again on the same dirs, waiting until it answers.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop().await?;
        self.spawn_and_wait().await
    }

    /// Like [`Berthd::restart`] but returns once the process is started, for
    /// tests that talk to berthd while its start-up recovery runs; follow with
    /// [`Berthd::wait_ready`].
    pub async fn restart_without_waiting(&mut self) -> Result<()> {
        self.stop().await?;
        self.spawn()
    }

    /// Kills everything this instance left behind: berthd, every process whose
    /// command line names our tempdir (monitors), every process in another mount
    /// namespace whose mounts reference our tempdir (containers), then detaches
    /// mounts under it, deepest first. Called by drop; idempotent.
    pub fn cleanup(&mut self) {
        let _ = self.kill9();
        let dir = self.dir.path().to_path_buf();
        crate::cleanup::kill_and_unmount_under(&dir);
    }
}

impl Drop for Berthd {
    fn drop(&mut self) {
        // The log, when the test panicked, is printed as `daemon` drops.
        self.cleanup();
    }
}

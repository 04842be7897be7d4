//! The boundary between berthd and `berth-monitor`: every subcommand and its
//! flags, written by berthd ([`MonitorCommand::encode`]) and read by the
//! monitor ([`MonitorCommand::decode`]) with the same code.
//!
//! ```text
//! berth-monitor create --id ID --bundle DIR --state-dir DIR [--log-path FILE]
//!                      [--stdin] [--restrict-oom-score-adj] [--cgroup-root DIR]
//!                      [--seccomp-cache DIR]
//! berth-monitor exec --state-dir DIR --process FILE [--tty] [--seccomp-cache DIR]
//! berth-monitor pin-ns --dir DIR [--net] [--ipc] [--uts] [--pid] [--hostname NAME] [--sysctl K=V]... [--uid-map C:H:L... --gid-map C:H:L...]
//! berth-monitor start|state|stats --state-dir DIR
//! berth-monitor kill --state-dir DIR [--signal N] [--all]
//! berth-monitor delete --state-dir DIR [--force]
//! ```
//!
//! Relative paths are made absolute when read (the monitor changes directory
//! to `/` before it needs them). Unlike `serve_args.rs` this side has the
//! standard library: paths are `PathBuf`s.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use super::argv::{ArgError, Reader, Writer};
use crate::container::create::CreateOptions;
use crate::pin::PinOptions;
use crate::security::SecurityOptions;

const ID: &str = "--id";
const BUNDLE: &str = "--bundle";
const STATE_DIR: &str = "--state-dir";
const LOG_PATH: &str = "--log-path";
const STDIN: &str = "--stdin";
const RESTRICT_OOM: &str = "--restrict-oom-score-adj";
const CGROUP_ROOT: &str = "--cgroup-root";
const SECCOMP_CACHE: &str = "--seccomp-cache";
const PROCESS: &str = "--process";
const TTY: &str = "--tty";
const DIR: &str = "--dir";
const NET: &str = "--net";
const IPC: &str = "--ipc";
const UTS: &str = "--uts";
const PID: &str = "--pid";
const HOSTNAME: &str = "--hostname";
const SYSCTL: &str = "--sysctl";
const UID_MAP: &str = "--uid-map";
const GID_MAP: &str = "--gid-map";
const SIGNAL: &str = "--signal";
const ALL: &str = "--all";
const FORCE: &str = "--force";

/// Where cgroupfs is mounted unless `--cgroup-root` says otherwise (tests).
pub const DEFAULT_CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// One `berth-monitor` invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MonitorCommand {
    /// Create a container and stay as its monitor; prints the init's pid.
    Create {
        options: CreateOptions,
        /// The CRI log file.
        log_path: Option<PathBuf>,
    },
    /// Run the process described in `process` (OCI process JSON) in the
    /// container whose monitor state is in `state_dir`; exits with its code.
    Exec {
        state_dir: PathBuf,
        process: PathBuf,
        tty: bool,
        seccomp_cache: Option<PathBuf>,
    },
    /// Pin namespaces for a pod (a shared pid namespace needs a process).
    PinNs(PinOptions),
    Start {
        state_dir: PathBuf,
    },
    State {
        state_dir: PathBuf,
    },
    Stats {
        state_dir: PathBuf,
    },
    Kill {
        state_dir: PathBuf,
        signal: i32,
        all: bool,
    },
    Delete {
        state_dir: PathBuf,
        force: bool,
    },
}

impl MonitorCommand {
    /// The subcommand, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            MonitorCommand::Create { .. } => "create",
            MonitorCommand::Exec { .. } => "exec",
            MonitorCommand::PinNs(_) => "pin-ns",
            MonitorCommand::Start { .. } => "start",
            MonitorCommand::State { .. } => "state",
            MonitorCommand::Stats { .. } => "stats",
            MonitorCommand::Kill { .. } => "kill",
            MonitorCommand::Delete { .. } => "delete",
        }
    }

    /// The arguments after the program name.
    pub fn encode(&self) -> Vec<OsString> {
        let mut w = Writer::new(&[self.name()]);
        match self {
            MonitorCommand::Create {
                options: o,
                log_path,
            } => {
                w.value(ID, o.id.as_bytes())
                    .value(BUNDLE, bytes(&o.bundle))
                    .value(STATE_DIR, bytes(&o.state_dir))
                    .optional(LOG_PATH, log_path.as_deref().map(bytes))
                    .switch(STDIN, o.stdin)
                    .switch(RESTRICT_OOM, o.security.restrict_oom_score_adj);
                if o.cgroup_root != Path::new(DEFAULT_CGROUP_ROOT) {
                    w.value(CGROUP_ROOT, bytes(&o.cgroup_root));
                }
                w.optional(SECCOMP_CACHE, o.seccomp_cache.as_deref().map(bytes));
            }
            MonitorCommand::Exec {
                state_dir,
                process,
                tty,
                seccomp_cache,
            } => {
                w.value(STATE_DIR, bytes(state_dir))
                    .value(PROCESS, bytes(process))
                    .switch(TTY, *tty)
                    .optional(SECCOMP_CACHE, seccomp_cache.as_deref().map(bytes));
            }
            MonitorCommand::PinNs(o) => {
                w.value(DIR, bytes(&o.dir))
                    .switch(NET, o.net)
                    .switch(UTS, o.uts)
                    .switch(IPC, o.ipc)
                    .switch(PID, o.pid)
                    .optional(HOSTNAME, o.hostname.as_deref().map(str::as_bytes));
                for (k, v) in &o.sysctls {
                    w.value(SYSCTL, format!("{k}={v}").as_bytes());
                }
                for m in &o.uid_maps {
                    w.value(UID_MAP, m.arg().as_bytes());
                }
                for m in &o.gid_maps {
                    w.value(GID_MAP, m.arg().as_bytes());
                }
            }
            MonitorCommand::Start { state_dir }
            | MonitorCommand::State { state_dir }
            | MonitorCommand::Stats { state_dir } => {
                w.value(STATE_DIR, bytes(state_dir));
            }
            MonitorCommand::Kill {
                state_dir,
                signal,
                all,
            } => {
                w.value(STATE_DIR, bytes(state_dir))
                    .number(SIGNAL, signal)
                    .switch(ALL, *all);
            }
            MonitorCommand::Delete { state_dir, force } => {
                w.value(STATE_DIR, bytes(state_dir)).switch(FORCE, *force);
            }
        }
        w.finish().into_iter().map(OsString::from_vec).collect()
    }

    /// Reads the arguments after the program name.
    pub fn decode<'a>(mut args: impl Iterator<Item = &'a [u8]>) -> Result<Self, ArgError> {
        let cmd = args.next().ok_or(ArgError::MissingCommand)?;
        let mut r = Reader::new(args);
        let mut f = Flags::default();
        let unknown = |flag: &[u8]| ArgError::UnknownFlag(flag.to_vec());
        match cmd {
            b"create" => {
                while let Some(flag) = r.next_flag()? {
                    match flag {
                        k if k == ID.as_bytes() => f.id = Some(utf8(ID, r.value(ID)?)?),
                        k if k == BUNDLE.as_bytes() => f.bundle = Some(path(r.value(BUNDLE)?)),
                        k if k == STATE_DIR.as_bytes() => f.state_dir(&mut r)?,
                        k if k == LOG_PATH.as_bytes() => {
                            f.log_path = Some(path(r.value(LOG_PATH)?))
                        }
                        k if k == STDIN.as_bytes() => f.stdin = r.switch(STDIN)?,
                        k if k == RESTRICT_OOM.as_bytes() => {
                            f.restrict_oom = r.switch(RESTRICT_OOM)?
                        }
                        k if k == CGROUP_ROOT.as_bytes() => {
                            f.cgroup_root = Some(path(r.value(CGROUP_ROOT)?))
                        }
                        k if k == SECCOMP_CACHE.as_bytes() => f.seccomp_cache(&mut r)?,
                        k => return Err(unknown(k)),
                    }
                }
                Ok(MonitorCommand::Create {
                    options: CreateOptions {
                        id: f.id.ok_or(ArgError::Missing(ID))?,
                        bundle: f.bundle.ok_or(ArgError::Missing(BUNDLE))?,
                        state_dir: f.state_dir.ok_or(ArgError::Missing(STATE_DIR))?,
                        stdin: f.stdin,
                        security: SecurityOptions {
                            restrict_oom_score_adj: f.restrict_oom,
                        },
                        cgroup_root: f
                            .cgroup_root
                            .unwrap_or_else(|| PathBuf::from(DEFAULT_CGROUP_ROOT)),
                        seccomp_cache: f.seccomp_cache,
                    },
                    log_path: f.log_path,
                })
            }
            b"exec" => {
                while let Some(flag) = r.next_flag()? {
                    match flag {
                        k if k == STATE_DIR.as_bytes() => f.state_dir(&mut r)?,
                        k if k == PROCESS.as_bytes() => f.process = Some(path(r.value(PROCESS)?)),
                        k if k == TTY.as_bytes() => f.tty = r.switch(TTY)?,
                        k if k == SECCOMP_CACHE.as_bytes() => f.seccomp_cache(&mut r)?,
                        k => return Err(unknown(k)),
                    }
                }
                Ok(MonitorCommand::Exec {
                    state_dir: f.state_dir.ok_or(ArgError::Missing(STATE_DIR))?,
                    process: f.process.ok_or(ArgError::Missing(PROCESS))?,
                    tty: f.tty,
                    seccomp_cache: f.seccomp_cache,
                })
            }
            b"pin-ns" => {
                let mut o = PinOptions::default();
                let mut dir = None;
                while let Some(flag) = r.next_flag()? {
                    match flag {
                        k if k == DIR.as_bytes() => dir = Some(path(r.value(DIR)?)),
                        k if k == NET.as_bytes() => o.net = r.switch(NET)?,
                        k if k == IPC.as_bytes() => o.ipc = r.switch(IPC)?,
                        k if k == UTS.as_bytes() => o.uts = r.switch(UTS)?,
                        k if k == PID.as_bytes() => o.pid = r.switch(PID)?,
                        k if k == HOSTNAME.as_bytes() => {
                            o.hostname = Some(utf8(HOSTNAME, r.value(HOSTNAME)?)?)
                        }
                        k if k == SYSCTL.as_bytes() => {
                            let kv = utf8(SYSCTL, r.value(SYSCTL)?)?;
                            let (k, v) = kv.split_once('=').ok_or_else(|| {
                                ArgError::Invalid(SYSCTL, kv.clone().into_bytes())
                            })?;
                            o.sysctls.push((k.to_string(), v.to_string()));
                        }
                        k if k == UID_MAP.as_bytes() || k == GID_MAP.as_bytes() => {
                            let name = if k == UID_MAP.as_bytes() {
                                UID_MAP
                            } else {
                                GID_MAP
                            };
                            let v = utf8(name, r.value(name)?)?;
                            let m = crate::idmap::IdMap::parse(&v)
                                .ok_or_else(|| ArgError::Invalid(name, v.clone().into_bytes()))?;
                            if name == UID_MAP {
                                o.uid_maps.push(m);
                            } else {
                                o.gid_maps.push(m);
                            }
                        }
                        k => return Err(unknown(k)),
                    }
                }
                o.dir = dir.ok_or(ArgError::Missing(DIR))?;
                Ok(MonitorCommand::PinNs(o))
            }
            b"start" | b"state" | b"stats" | b"kill" | b"delete" => {
                let (kill, delete) = (cmd == b"kill", cmd == b"delete");
                while let Some(flag) = r.next_flag()? {
                    match flag {
                        k if k == STATE_DIR.as_bytes() => f.state_dir(&mut r)?,
                        k if kill && k == SIGNAL.as_bytes() => f.signal = Some(r.i32(SIGNAL)?),
                        k if kill && k == ALL.as_bytes() => f.all = r.switch(ALL)?,
                        k if delete && k == FORCE.as_bytes() => f.force = r.switch(FORCE)?,
                        k => return Err(unknown(k)),
                    }
                }
                let state_dir = f.state_dir.ok_or(ArgError::Missing(STATE_DIR))?;
                Ok(match cmd {
                    b"start" => MonitorCommand::Start { state_dir },
                    b"state" => MonitorCommand::State { state_dir },
                    b"stats" => MonitorCommand::Stats { state_dir },
                    b"kill" => MonitorCommand::Kill {
                        state_dir,
                        signal: f.signal.unwrap_or(libc::SIGTERM),
                        all: f.all,
                    },
                    _ => MonitorCommand::Delete {
                        state_dir,
                        force: f.force,
                    },
                })
            }
            other => Err(ArgError::UnknownCommand(other.to_vec())),
        }
    }
}

/// What the flags said so far, for the subcommands that share flags.
#[derive(Default)]
struct Flags {
    id: Option<String>,
    bundle: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    log_path: Option<PathBuf>,
    stdin: bool,
    restrict_oom: bool,
    cgroup_root: Option<PathBuf>,
    seccomp_cache: Option<PathBuf>,
    process: Option<PathBuf>,
    tty: bool,
    signal: Option<i32>,
    all: bool,
    force: bool,
}

impl Flags {
    fn state_dir<'a>(
        &mut self,
        r: &mut Reader<'a, impl Iterator<Item = &'a [u8]>>,
    ) -> Result<(), ArgError> {
        self.state_dir = Some(path(r.value(STATE_DIR)?));
        Ok(())
    }

    fn seccomp_cache<'a>(
        &mut self,
        r: &mut Reader<'a, impl Iterator<Item = &'a [u8]>>,
    ) -> Result<(), ArgError> {
        self.seccomp_cache = Some(path(r.value(SECCOMP_CACHE)?));
        Ok(())
    }
}

fn bytes(p: &Path) -> &[u8] {
    p.as_os_str().as_bytes()
}

/// An absolute path (relative to the caller's directory when it was relative).
fn path(v: &[u8]) -> PathBuf {
    let p = Path::new(OsStr::from_bytes(v));
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn utf8(flag: &'static str, v: &[u8]) -> Result<String, ArgError> {
    String::from_utf8(v.to_vec()).map_err(|_| ArgError::Invalid(flag, v.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(c: &MonitorCommand) -> Result<MonitorCommand, ArgError> {
        let args = c.encode();
        MonitorCommand::decode(args.iter().map(|a| a.as_bytes()))
    }

    fn create(stdin: bool) -> CreateOptions {
        CreateOptions {
            id: "abc123".into(),
            bundle: "/var/lib/berth/containers/abc123".into(),
            state_dir: "/run/berth/c/abc123".into(),
            stdin,
            security: SecurityOptions {
                restrict_oom_score_adj: stdin,
            },
            cgroup_root: DEFAULT_CGROUP_ROOT.into(),
            seccomp_cache: Some("/run/berth/seccomp".into()),
        }
    }

    #[test]
    fn every_subcommand_round_trips() {
        let dir = PathBuf::from("/run/berth/c/x y");
        let cases = [
            MonitorCommand::Create {
                options: create(true),
                log_path: Some("/var/log/pods/p/c/0.log".into()),
            },
            MonitorCommand::Create {
                options: CreateOptions {
                    cgroup_root: "/tmp/fake-cgroup".into(),
                    seccomp_cache: None,
                    ..create(false)
                },
                log_path: None,
            },
            MonitorCommand::Exec {
                state_dir: dir.clone(),
                process: "/run/berth/c/x/exec-1.json".into(),
                tty: true,
                seccomp_cache: None,
            },
            MonitorCommand::Exec {
                state_dir: dir.clone(),
                process: "/p.json".into(),
                tty: false,
                seccomp_cache: Some("/s".into()),
            },
            MonitorCommand::PinNs(PinOptions {
                dir: "/run/berth/ns/pod".into(),
                net: true,
                ipc: true,
                uts: true,
                pid: false,
                hostname: Some("web-0".into()),
                sysctls: vec![
                    ("net.ipv4.ip_forward".into(), "1".into()),
                    ("kernel.shmmax".into(), "a=b".into()),
                ],
                uid_maps: vec![crate::idmap::IdMap {
                    container_id: 0,
                    host_id: 65536,
                    length: 65536,
                }],
                gid_maps: vec![
                    crate::idmap::IdMap {
                        container_id: 0,
                        host_id: 131072,
                        length: 1,
                    },
                    crate::idmap::IdMap {
                        container_id: 1,
                        host_id: 200000,
                        length: 10,
                    },
                ],
            }),
            MonitorCommand::PinNs(PinOptions {
                dir: "/d".into(),
                pid: true,
                ..PinOptions::default()
            }),
            MonitorCommand::Start {
                state_dir: dir.clone(),
            },
            MonitorCommand::State {
                state_dir: dir.clone(),
            },
            MonitorCommand::Stats {
                state_dir: dir.clone(),
            },
            MonitorCommand::Kill {
                state_dir: dir.clone(),
                signal: 9,
                all: true,
            },
            MonitorCommand::Delete {
                state_dir: dir,
                force: true,
            },
        ];
        for c in cases {
            assert_eq!(round_trip(&c).unwrap(), c);
        }
    }

    fn decode(words: &[&str]) -> Result<MonitorCommand, ArgError> {
        MonitorCommand::decode(words.iter().map(|w| w.as_bytes()))
    }

    #[test]
    fn the_command_lines_tests_and_operators_type_still_read() {
        let c = decode(&["kill", "--state-dir=/s", "--signal", "15"]).unwrap();
        assert_eq!(
            c,
            MonitorCommand::Kill {
                state_dir: "/s".into(),
                signal: 15,
                all: false
            }
        );
        let MonitorCommand::Create { options, .. } =
            decode(&["create", "--id", "a", "--bundle", "b", "--state-dir", "/s"]).unwrap()
        else {
            panic!("not a create")
        };
        assert!(options.bundle.is_absolute(), "{:?}", options.bundle);
        assert_eq!(options.cgroup_root, Path::new(DEFAULT_CGROUP_ROOT));
    }

    #[test]
    fn dead_unknown_and_misplaced_flags_are_refused() {
        for dead in [
            "--cgroup-layout",
            "--cgroup-path",
            "--oom-baseline",
            "--fd-pty",
        ] {
            assert_eq!(
                decode(&["create", "--id", "a", dead, "x"]),
                Err(ArgError::UnknownFlag(dead.as_bytes().to_vec()))
            );
        }
        decode(&["start", "--state-dir", "/s", "--force"]).unwrap_err();
        decode(&["kill", "--state-dir", "/s", "--signal", "TERM"]).unwrap_err();
        decode(&["pin-ns", "--dir", "/d", "--sysctl", "novalue"]).unwrap_err();
        assert_eq!(
            decode(&["exec", "--state-dir", "/s"]),
            Err(ArgError::Missing(PROCESS))
        );
        assert_eq!(
            decode(&["frobnicate"]),
            Err(ArgError::UnknownCommand(b"frobnicate".to_vec()))
        );
        assert_eq!(decode(&[]), Err(ArgError::MissingCommand));
    }
}

//! The boundary between `berth-monitor` and `berth-monitor-serve`: what
//! `berth-monitor create` (and `pin-ns --pid`, for a pod's pause init) passes
//! when it execs the embedded steady-state binary. Both sides build this file
//! (berth-monitor through the library, `runtime/lite/` by `#[path]`), so the
//! flags are written and read by the same code.
//!
//! ```text
//! berth-monitor __serve --state-dir DIR --init-pid N [--oom-baseline N]
//!     [--oom-file FILE] [--log-path FILE] --fd-attach N
//!     (--fd-stdout N --fd-stderr N [--fd-stdin N] | --fd-pty N)
//! berth-monitor __pause --dir=DIR
//! ```
//!
//! argv[0] is `berth-monitor` so that `ps` names the process as operators
//! know it. Core and `alloc` only.

use alloc::vec::Vec;

use super::argv::{ArgError, Reader, Writer};

const SERVE: &str = "__serve";
const PAUSE: &str = "__pause";
const STATE_DIR: &str = "--state-dir";
const INIT_PID: &str = "--init-pid";
const OOM_BASELINE: &str = "--oom-baseline";
const OOM_FILE: &str = "--oom-file";
const LOG_PATH: &str = "--log-path";
const FD_ATTACH: &str = "--fd-attach";
const FD_STDIN: &str = "--fd-stdin";
const FD_STDOUT: &str = "--fd-stdout";
const FD_STDERR: &str = "--fd-stderr";
const FD_PTY: &str = "--fd-pty";
const DIR: &str = "--dir";

/// What berth-monitor-serve is asked to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServeCommand {
    /// Watch one container.
    Serve(ServeArgs),
    /// Be the init of a pod's shared pid namespace; `dir` (its pin directory)
    /// only names the pod for operators.
    Pause { dir: Vec<u8> },
}

/// A container's monitor: where its state lives and the fds it inherits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeArgs {
    /// The monitor's state dir (exit.json, attach.sock).
    pub state_dir: Vec<u8>,
    /// The container's init.
    pub pid: i32,
    /// The cgroup's OOM kill count when the container was created.
    pub oom_baseline: u64,
    /// The cgroup file that counts OOM kills (memory.oom_control or memory.events).
    pub oom_file: Option<Vec<u8>>,
    /// The CRI log file.
    pub log_path: Option<Vec<u8>>,
    /// The listening attach socket.
    pub attach: i32,
    pub stdio: ServeStdio,
}

/// The container's side of its stdio, as fds inherited across the exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServeStdio {
    Pipes {
        stdin: Option<i32>,
        stdout: i32,
        stderr: i32,
    },
    Pty(i32),
}

impl ServeCommand {
    /// The full argv, program name first.
    pub fn encode(&self) -> Vec<Vec<u8>> {
        match self {
            // One word: `ps` shows which pod the init belongs to at a glance.
            ServeCommand::Pause { dir } => Writer::new(&["berth-monitor", PAUSE])
                .joined(DIR, dir)
                .finish(),
            ServeCommand::Serve(a) => {
                let mut w = Writer::new(&["berth-monitor", SERVE]);
                w.value(STATE_DIR, &a.state_dir)
                    .number(INIT_PID, a.pid)
                    .number(OOM_BASELINE, a.oom_baseline)
                    .optional(OOM_FILE, a.oom_file.as_deref())
                    .optional(LOG_PATH, a.log_path.as_deref())
                    .number(FD_ATTACH, a.attach);
                match a.stdio {
                    ServeStdio::Pipes {
                        stdin,
                        stdout,
                        stderr,
                    } => {
                        w.number(FD_STDOUT, stdout).number(FD_STDERR, stderr);
                        if let Some(fd) = stdin {
                            w.number(FD_STDIN, fd);
                        }
                    }
                    ServeStdio::Pty(fd) => {
                        w.number(FD_PTY, fd);
                    }
                }
                w.finish()
            }
        }
    }

    /// Reads a full argv (program name first, as [`ServeCommand::encode`] wrote it).
    pub fn decode<'a>(mut argv: impl Iterator<Item = &'a [u8]>) -> Result<Self, ArgError> {
        argv.next();
        let cmd = argv.next().ok_or(ArgError::MissingCommand)?;
        let mut r = Reader::new(argv);
        if cmd == PAUSE.as_bytes() {
            let mut dir = None;
            while let Some(flag) = r.next_flag()? {
                match flag {
                    f if f == DIR.as_bytes() => dir = Some(r.bytes(DIR)?),
                    other => return Err(ArgError::UnknownFlag(other.to_vec())),
                }
            }
            return Ok(ServeCommand::Pause {
                dir: dir.ok_or(ArgError::Missing(DIR))?,
            });
        }
        if cmd != SERVE.as_bytes() {
            return Err(ArgError::UnknownCommand(cmd.to_vec()));
        }
        let (mut state_dir, mut pid, mut oom_baseline) = (None, None, 0);
        let (mut oom_file, mut log_path, mut attach) = (None, None, None);
        let (mut stdin, mut stdout, mut stderr, mut pty) = (None, None, None, None);
        while let Some(flag) = r.next_flag()? {
            match flag {
                f if f == STATE_DIR.as_bytes() => state_dir = Some(r.bytes(STATE_DIR)?),
                f if f == INIT_PID.as_bytes() => pid = Some(r.i32(INIT_PID)?),
                f if f == OOM_BASELINE.as_bytes() => oom_baseline = r.u64(OOM_BASELINE)?,
                f if f == OOM_FILE.as_bytes() => oom_file = Some(r.bytes(OOM_FILE)?),
                f if f == LOG_PATH.as_bytes() => log_path = Some(r.bytes(LOG_PATH)?),
                f if f == FD_ATTACH.as_bytes() => attach = Some(r.i32(FD_ATTACH)?),
                f if f == FD_STDIN.as_bytes() => stdin = Some(r.i32(FD_STDIN)?),
                f if f == FD_STDOUT.as_bytes() => stdout = Some(r.i32(FD_STDOUT)?),
                f if f == FD_STDERR.as_bytes() => stderr = Some(r.i32(FD_STDERR)?),
                f if f == FD_PTY.as_bytes() => pty = Some(r.i32(FD_PTY)?),
                other => return Err(ArgError::UnknownFlag(other.to_vec())),
            }
        }
        let stdio = match (pty, stdout, stderr) {
            (Some(m), None, None) if stdin.is_none() => ServeStdio::Pty(m),
            (None, Some(stdout), Some(stderr)) => ServeStdio::Pipes {
                stdin,
                stdout,
                stderr,
            },
            (None, None, _) => return Err(ArgError::Missing(FD_STDOUT)),
            (None, _, None) => return Err(ArgError::Missing(FD_STDERR)),
            (Some(_), _, _) => return Err(ArgError::Invalid(FD_PTY, Vec::new())),
        };
        Ok(ServeCommand::Serve(ServeArgs {
            state_dir: state_dir.ok_or(ArgError::Missing(STATE_DIR))?,
            pid: pid.ok_or(ArgError::Missing(INIT_PID))?,
            oom_baseline,
            oom_file,
            log_path,
            attach: attach.ok_or(ArgError::Missing(FD_ATTACH))?,
            stdio,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(c: &ServeCommand) -> Result<ServeCommand, ArgError> {
        let argv = c.encode();
        ServeCommand::decode(argv.iter().map(Vec::as_slice))
    }

    fn serve(stdio: ServeStdio) -> ServeArgs {
        ServeArgs {
            state_dir: b"/run/berth/c/abc".to_vec(),
            pid: 4242,
            oom_baseline: u64::MAX,
            oom_file: Some(b"/sys/fs/cgroup/memory/x/memory.oom_control".to_vec()),
            log_path: Some(b"/var/log/pods/p/c/0.log".to_vec()),
            attach: 3,
            stdio,
        }
    }

    #[test]
    fn every_shape_round_trips() {
        let cases = [
            ServeCommand::Serve(serve(ServeStdio::Pty(7))),
            ServeCommand::Serve(serve(ServeStdio::Pipes {
                stdin: Some(4),
                stdout: 5,
                stderr: 6,
            })),
            ServeCommand::Serve(ServeArgs {
                oom_file: None,
                log_path: None,
                oom_baseline: 0,
                ..serve(ServeStdio::Pipes {
                    stdin: None,
                    stdout: 5,
                    stderr: 6,
                })
            }),
            ServeCommand::Pause {
                dir: b"/run/berth/ns/pod with space=1".to_vec(),
            },
        ];
        for c in cases {
            assert_eq!(round_trip(&c).unwrap(), c);
        }
    }

    #[test]
    fn argv_reads_as_operators_expect() {
        let argv = ServeCommand::Serve(serve(ServeStdio::Pty(7))).encode();
        let words: Vec<&str> = argv
            .iter()
            .map(|a| core::str::from_utf8(a).unwrap())
            .collect();
        assert_eq!(
            &words[..4],
            [
                "berth-monitor",
                "__serve",
                "--state-dir",
                "/run/berth/c/abc"
            ]
        );
        assert!(words.windows(2).any(|w| w == ["--fd-pty", "7"]));
    }

    #[test]
    fn incomplete_or_contradictory_lines_are_refused() {
        let decode = |words: &[&str]| ServeCommand::decode(words.iter().map(|w| w.as_bytes()));
        let base = [
            "berth-monitor",
            "__serve",
            "--state-dir",
            "/s",
            "--init-pid",
            "9",
            "--fd-attach",
            "3",
        ];
        let with = |extra: &[&'static str]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            v
        };
        assert_eq!(decode(&with(&[])), Err(ArgError::Missing(FD_STDOUT)));
        assert_eq!(
            decode(&with(&["--fd-stdout", "1"])),
            Err(ArgError::Missing(FD_STDERR))
        );
        decode(&with(&["--fd-pty", "1", "--fd-stdout", "2"])).unwrap_err();
        decode(&with(&["--fd-pty", "1", "--fd-stdin", "2"])).unwrap_err();
        decode(&with(&["--fd-pty", "4294967297"])).unwrap_err();
        assert_eq!(
            decode(&with(&["--fd-pty", "1", "--cgroup-path", "/x"])),
            Err(ArgError::UnknownFlag(b"--cgroup-path".to_vec()))
        );
        decode(&with(&["--fd-pty", "1"])).unwrap();
        assert_eq!(decode(&["berth-monitor"]), Err(ArgError::MissingCommand));
        decode(&["berth-monitor", "__pause"]).unwrap_err();
        assert_eq!(
            decode(&["berth-monitor", "__pause", "--dir=/x"]),
            Ok(ServeCommand::Pause {
                dir: b"/x".to_vec()
            })
        );
    }
}

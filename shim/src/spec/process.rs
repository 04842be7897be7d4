//! The container process: argv, environment, working directory, user and groups,
//! and the signal that stops it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use berth_proto::v1::{
    ContainerConfig, LinuxContainerSecurityContext, Signal, SupplementalGroupsPolicy,
};
use oci_spec::runtime::User;

use crate::error::{Error, Result};
use crate::image::store::ImageConfig;

/// PATH when neither the image nor the request sets one (containerd's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// kubelet's rule: `command` replaces the image Entrypoint and then the image
/// Cmd no longer applies; `args` replace the image Cmd.
pub fn args(image: &ImageConfig, config: &ContainerConfig) -> Result<Vec<String>> {
    let (entrypoint, cmd) = if !config.command.is_empty() {
        (&config.command, &config.args)
    } else if !config.args.is_empty() {
        (&image.entrypoint, &config.args)
    } else {
        (&image.entrypoint, &image.cmd)
    };
    let argv: Vec<String> = entrypoint.iter().chain(cmd).cloned().collect();
    if argv.is_empty() {
        return Err(Error::InvalidArgument(
            "container has no command: image has no entrypoint/cmd and config.command is empty"
                .into(),
        ));
    }
    Ok(argv)
}

fn env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

fn set_env(env: &mut Vec<String>, entry: String) {
    match env.iter_mut().find(|e| env_key(e) == env_key(&entry)) {
        Some(slot) => *slot = entry,
        None => env.push(entry),
    }
}

/// Defaults (PATH, HOSTNAME, and TERM=xterm for a tty), then the image's env,
/// then the request's envs; a later entry replaces an earlier one with the same
/// key in place.
pub fn env(image: &ImageConfig, config: &ContainerConfig, hostname: &str) -> Result<Vec<String>> {
    let mut env = vec![
        format!("PATH={DEFAULT_PATH}"),
        format!("HOSTNAME={hostname}"),
    ];
    if config.tty {
        env.push("TERM=xterm".to_string());
    }
    for e in &image.env {
        if !e.is_empty() {
            set_env(&mut env, e.clone());
        }
    }
    for (i, kv) in config.envs.iter().enumerate() {
        if kv.key.is_empty() || kv.key.contains('=') {
            return Err(Error::InvalidArgument(format!(
                "envs[{i}].key: invalid environment variable name {:?}",
                kv.key
            )));
        }
        set_env(&mut env, format!("{}={}", kv.key, kv.value));
    }
    Ok(env)
}

/// `working_dir` of the request, else the image's WorkingDir, else `/`.
pub fn cwd(image: &ImageConfig, config: &ContainerConfig) -> Result<PathBuf> {
    if !config.working_dir.is_empty() {
        if !config.working_dir.starts_with('/') {
            return Err(Error::InvalidArgument(format!(
                "working_dir: {:?} is not an absolute path",
                config.working_dir
            )));
        }
        return Ok(PathBuf::from(&config.working_dir));
    }
    if !image.working_dir.is_empty() {
        // Docker resolves a relative WorkingDir against `/`.
        return Ok(Path::new("/").join(&image.working_dir));
    }
    Ok(PathBuf::from("/"))
}

/// One `/etc/passwd` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

/// One `/etc/group` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// The most of an image's `/etc/passwd` or `/etc/group` that is read.
const MAX_ETC_BYTES: u64 = 16 << 20;

/// Reads `/etc/<name>` of the rootfs as the container will see it: the kernel
/// resolves the path inside the rootfs (`berth_runtime::sys::inroot`, the same
/// lookup the runtime uses for mount targets), so no symlink of the image can
/// point the read at a host file. `None` when the file does not exist.
fn read_etc(rootfs: &Path, name: &str) -> Result<Option<String>> {
    let rel = Path::new("/etc").join(name);
    match berth_runtime::sys::inroot::read_in_root(rootfs, &rel, MAX_ETC_BYTES) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        // The image's doing (a symlink loop or chain past 40 links, a FIFO or
        // device where a file belongs): the request cannot succeed with it.
        Err(e)
            if e.kind() == std::io::ErrorKind::InvalidInput
                || matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) =>
        {
            Err(Error::FailedPrecondition(format!(
                "image file {}: {e}",
                rel.display()
            )))
        }
        Err(e) => Err(Error::io(
            "read",
            rootfs.join(rel.strip_prefix("/").unwrap_or(&rel)),
        )(e)),
    }
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 || f[0].is_empty() {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].trim().parse().ok()?,
                gid: f[3].trim().parse().ok()?,
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 3 || f[0].is_empty() {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_string(),
                gid: f[2].trim().parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// The image's user database; empty lists when a file is missing.
struct UserDb {
    passwd: Option<Vec<PasswdEntry>>,
    group: Option<Vec<GroupEntry>>,
}

impl UserDb {
    fn load(rootfs: &Path) -> Result<Self> {
        Ok(UserDb {
            passwd: read_etc(rootfs, "passwd")?.map(|t| parse_passwd(&t)),
            group: read_etc(rootfs, "group")?.map(|t| parse_group(&t)),
        })
    }

    fn user_by_name(&self, name: &str) -> Option<&PasswdEntry> {
        self.passwd.iter().flatten().find(|e| e.name == name)
    }

    fn user_by_uid(&self, uid: u32) -> Option<&PasswdEntry> {
        self.passwd.iter().flatten().find(|e| e.uid == uid)
    }

    fn group_by_name(&self, name: &str) -> Option<&GroupEntry> {
        self.group.iter().flatten().find(|e| e.name == name)
    }

    /// gids of the groups that list `user` as a member (its own-named group
    /// is its primary group, not a supplementary one).
    fn memberships(&self, user: &str) -> Vec<u32> {
        self.group
            .iter()
            .flatten()
            .filter(|g| g.name != user && g.members.iter().any(|m| m == user))
            .map(|g| g.gid)
            .collect()
    }

    /// `(uid, primary gid, user name)` of a user spec's user part.
    fn lookup_user(&self, user: &str, field: &str) -> Result<(u32, u32, Option<String>)> {
        if let Ok(uid) = user.parse::<u32>() {
            // A numeric uid need not exist; runc then uses gid 0.
            return Ok(match self.user_by_uid(uid) {
                Some(e) => (uid, e.gid, Some(e.name.clone())),
                None => (uid, 0, None),
            });
        }
        if self.passwd.is_none() {
            return Err(Error::InvalidArgument(format!(
                "{field}: user {user:?} is not numeric and the image has no /etc/passwd"
            )));
        }
        let e = self.user_by_name(user).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{field}: no user {user:?} in the image's /etc/passwd"
            ))
        })?;
        Ok((e.uid, e.gid, Some(e.name.clone())))
    }

    fn lookup_group(&self, group: &str, field: &str) -> Result<u32> {
        if let Ok(gid) = group.parse::<u32>() {
            return Ok(gid);
        }
        if self.group.is_none() {
            return Err(Error::InvalidArgument(format!(
                "{field}: group {group:?} is not numeric and the image has no /etc/group"
            )));
        }
        self.group_by_name(group).map(|g| g.gid).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{field}: no group {group:?} in the image's /etc/group"
            ))
        })
    }
}

/// A resolved user spec: ids plus the user's name when `/etc/passwd` knows it.
struct Resolved {
    uid: u32,
    gid: u32,
    name: Option<String>,
}

fn resolve_with(db: &UserDb, user: &str, field: &str) -> Result<Resolved> {
    let user = user.trim();
    let (u, g) = match user.split_once(':') {
        None if user.is_empty() => ("0", None),
        None => (user, None),
        Some((u, g)) if !u.is_empty() && !g.is_empty() => (u, Some(g)),
        Some(_) => {
            return Err(Error::InvalidArgument(format!(
                "{field}: malformed user {user:?}"
            )))
        }
    };
    let (uid, primary, name) = db.lookup_user(u, field)?;
    let gid = match g {
        Some(g) => db.lookup_group(g, field)?,
        None => primary,
    };
    Ok(Resolved { uid, gid, name })
}

/// containerd's additional gids: the sorted union of the primary gid (since
/// CVE-2023-25173), the groups listing the user as a member (unless the policy
/// is Strict) and the requested supplemental groups.
fn group_list(db: &UserDb, r: &Resolved, merge_image_groups: bool, extra: &[u32]) -> Vec<u32> {
    let mut gids = BTreeSet::from([r.gid]);
    if let (true, Some(name)) = (merge_image_groups, &r.name) {
        gids.extend(db.memberships(name));
    }
    gids.extend(extra);
    gids.into_iter().collect()
}

/// Resolves an image-style user spec (`name`, `uid`, `name:group`, `uid:gid`;
/// empty = root) against the rootfs' `/etc/passwd` and `/etc/group`. Returns
/// uid, gid and the additional gids (sorted: the gid and the user's groups).
pub fn resolve_user(rootfs: &Path, user: &str) -> Result<(u32, u32, Vec<u32>)> {
    let db = UserDb::load(rootfs)?;
    let r = resolve_with(&db, user, "user")?;
    Ok((r.uid, r.gid, group_list(&db, &r, true, &[])))
}

fn id_u32(v: i64, field: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::InvalidArgument(format!("{field}: {v} is not a valid id")))
}

/// The process user: the security context's run_as_user / run_as_username /
/// run_as_group win over the image's User; supplemental groups are added.
pub fn user(
    rootfs: &Path,
    image: &ImageConfig,
    sc: &LinuxContainerSecurityContext,
) -> Result<User> {
    let field = "linux.security_context";
    let db = UserDb::load(rootfs)?;
    let group = sc
        .run_as_group
        .as_ref()
        .map(|g| id_u32(g.value, &format!("{field}.run_as_group.value")))
        .transpose()?;
    let mut r = if let Some(u) = &sc.run_as_user {
        let uid = id_u32(u.value, &format!("{field}.run_as_user.value"))?;
        resolve_with(&db, &uid.to_string(), &format!("{field}.run_as_user"))?
    } else if !sc.run_as_username.is_empty() {
        if sc.run_as_username.contains(':') {
            return Err(Error::InvalidArgument(format!(
                "{field}.run_as_username: {:?} is not a user name",
                sc.run_as_username
            )));
        }
        resolve_with(
            &db,
            &sc.run_as_username,
            &format!("{field}.run_as_username"),
        )?
    } else if group.is_some() {
        return Err(Error::InvalidArgument(format!(
            "{field}.run_as_group: a group needs run_as_user or run_as_username"
        )));
    } else {
        resolve_with(&db, &image.user, "image config User")?
    };
    if let Some(g) = group {
        r.gid = g;
    }
    let mut extra = Vec::with_capacity(sc.supplemental_groups.len());
    for (i, g) in sc.supplemental_groups.iter().enumerate() {
        extra.push(id_u32(*g, &format!("{field}.supplemental_groups[{i}]"))?);
    }
    let strict = sc.supplemental_groups_policy == SupplementalGroupsPolicy::Strict as i32;
    let mut user = User::default();
    user.set_uid(r.uid);
    user.set_gid(r.gid);
    user.set_umask(None);
    user.set_additional_gids(Some(group_list(&db, &r, !strict, &extra)));
    user.set_username(None);
    Ok(user)
}

/// Number of a signal name: `SIGQUIT`, `QUIT`, `3`, `SIGRTMIN+3`, `RTMAX-1`.
pub fn parse_signal(name: &str) -> Option<i32> {
    let s = name.trim();
    if let Ok(n) = s.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let up = s.to_ascii_uppercase();
    let up = up.strip_prefix("SIG").unwrap_or(&up);
    // glibc reserves 32 and 33, so user space sees SIGRTMIN as 34.
    const RTMIN: i32 = 34;
    const RTMAX: i32 = 64;
    let rt = |rest: &str, base: i32, sign: i32| -> Option<i32> {
        let off = match rest {
            "" => 0,
            r => r.parse::<i32>().ok()?,
        };
        let n = base + sign * off;
        (RTMIN..=RTMAX).contains(&n).then_some(n)
    };
    if let Some(rest) = up.strip_prefix("RTMIN") {
        let rest = rest
            .strip_prefix('+')
            .or(rest.strip_prefix("PLUS"))
            .unwrap_or(rest);
        return rt(rest, RTMIN, 1);
    }
    if let Some(rest) = up.strip_prefix("RTMAX") {
        let rest = rest
            .strip_prefix('-')
            .or(rest.strip_prefix("MINUS"))
            .unwrap_or(rest);
        return rt(rest, RTMAX, -1);
    }
    Some(match up {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "ILL" => libc::SIGILL,
        "TRAP" => libc::SIGTRAP,
        "ABRT" | "IOT" => libc::SIGABRT,
        "BUS" => libc::SIGBUS,
        "FPE" => libc::SIGFPE,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "SEGV" => libc::SIGSEGV,
        "USR2" => libc::SIGUSR2,
        "PIPE" => libc::SIGPIPE,
        "ALRM" => libc::SIGALRM,
        "TERM" => libc::SIGTERM,
        "STKFLT" => libc::SIGSTKFLT,
        "CHLD" | "CLD" => libc::SIGCHLD,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "TSTP" => libc::SIGTSTP,
        "TTIN" => libc::SIGTTIN,
        "TTOU" => libc::SIGTTOU,
        "URG" => libc::SIGURG,
        "XCPU" => libc::SIGXCPU,
        "XFSZ" => libc::SIGXFSZ,
        "VTALRM" => libc::SIGVTALRM,
        "PROF" => libc::SIGPROF,
        "WINCH" => libc::SIGWINCH,
        "IO" | "POLL" => libc::SIGIO,
        "PWR" => libc::SIGPWR,
        "SYS" => libc::SIGSYS,
        _ => return None,
    })
}

/// The signal that stops the container: the request's `stop_signal`, else the
/// image's StopSignal, else SIGTERM.
pub fn stop_signal(image: &ImageConfig, config: &ContainerConfig) -> Result<i32> {
    let requested = Signal::try_from(config.stop_signal).map_err(|_| {
        Error::InvalidArgument(format!("stop_signal: unknown value {}", config.stop_signal))
    })?;
    if requested != Signal::RuntimeDefault {
        return parse_signal(requested.as_str_name()).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "stop_signal: unsupported signal {}",
                requested.as_str_name()
            ))
        });
    }
    if !image.stop_signal.is_empty() {
        return parse_signal(&image.stop_signal).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "image StopSignal: unknown signal {:?}",
                image.stop_signal
            ))
        });
    }
    Ok(libc::SIGTERM)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{Int64Value, KeyValue};

    fn image(entrypoint: &[&str], cmd: &[&str]) -> ImageConfig {
        ImageConfig {
            entrypoint: entrypoint.iter().map(|s| s.to_string()).collect(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn merges_entrypoint_and_cmd_like_kubelet() {
        struct Case {
            name: &'static str,
            image: (&'static [&'static str], &'static [&'static str]),
            command: &'static [&'static str],
            args: &'static [&'static str],
            want: &'static [&'static str],
        }
        let cases = [
            Case {
                name: "image only",
                image: (&["/ep"], &["c1", "c2"]),
                command: &[],
                args: &[],
                want: &["/ep", "c1", "c2"],
            },
            Case {
                name: "image cmd only",
                image: (&[], &["/bin/sh"]),
                command: &[],
                args: &[],
                want: &["/bin/sh"],
            },
            Case {
                name: "command drops image cmd",
                image: (&["/ep"], &["c1"]),
                command: &["/bin/true"],
                args: &[],
                want: &["/bin/true"],
            },
            Case {
                name: "args replace cmd",
                image: (&["/ep"], &["c1"]),
                command: &[],
                args: &["a1"],
                want: &["/ep", "a1"],
            },
            Case {
                name: "both",
                image: (&["/ep"], &["c1"]),
                command: &["/x"],
                args: &["a1", "a2"],
                want: &["/x", "a1", "a2"],
            },
            Case {
                name: "args without entrypoint",
                image: (&[], &["c1"]),
                command: &[],
                args: &["/a"],
                want: &["/a"],
            },
        ];
        for c in cases {
            let cfg = ContainerConfig {
                command: strings(c.command),
                args: strings(c.args),
                ..Default::default()
            };
            let got = args(&image(c.image.0, c.image.1), &cfg).unwrap();
            assert_eq!(got, strings(c.want), "{}", c.name);
        }
        let err = args(&image(&[], &[]), &ContainerConfig::default()).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)));
        assert!(
            err.to_string().contains("container has no command"),
            "{err}"
        );
    }

    #[test]
    fn env_overrides_by_key_and_defaults_path_and_hostname() {
        let img = ImageConfig {
            env: strings(&["A=image", "B=keep", "HOSTNAME=img"]),
            ..Default::default()
        };
        let cfg = ContainerConfig {
            envs: vec![
                KeyValue {
                    key: "A".into(),
                    value: "cri".into(),
                },
                KeyValue {
                    key: "C".into(),
                    value: "x=y".into(),
                },
            ],
            ..Default::default()
        };
        let got = env(&img, &cfg, "pod-host").unwrap();
        assert_eq!(
            got,
            strings(&[
                &format!("PATH={DEFAULT_PATH}"),
                "HOSTNAME=img",
                "A=cri",
                "B=keep",
                "C=x=y"
            ])
        );

        let img = ImageConfig {
            env: strings(&["PATH=/only"]),
            ..Default::default()
        };
        let got = env(&img, &ContainerConfig::default(), "h").unwrap();
        assert_eq!(got, strings(&["PATH=/only", "HOSTNAME=h"]));
        let tty = ContainerConfig {
            tty: true,
            ..Default::default()
        };
        let got = env(&img, &tty, "h").unwrap();
        assert_eq!(got, strings(&["PATH=/only", "HOSTNAME=h", "TERM=xterm"]));
        let tty = ContainerConfig {
            tty: true,
            envs: vec![KeyValue {
                key: "TERM".into(),
                value: "dumb".into(),
            }],
            ..Default::default()
        };
        assert!(env(&img, &tty, "h")
            .unwrap()
            .contains(&"TERM=dumb".to_string()));

        // A key that is a prefix of another key must not replace it.
        let img = ImageConfig {
            env: strings(&["AB=1"]),
            ..Default::default()
        };
        let cfg = ContainerConfig {
            envs: vec![KeyValue {
                key: "A".into(),
                value: "2".into(),
            }],
            ..Default::default()
        };
        let got = env(&img, &cfg, "h").unwrap();
        assert!(
            got.contains(&"AB=1".to_string()) && got.contains(&"A=2".to_string()),
            "{got:?}"
        );

        let cfg = ContainerConfig {
            envs: vec![KeyValue {
                key: "".into(),
                value: "v".into(),
            }],
            ..Default::default()
        };
        let err = env(&ImageConfig::default(), &cfg, "h").unwrap_err();
        assert!(err.to_string().contains("envs[0].key"), "{err}");
    }

    #[test]
    fn cwd_precedence() {
        let img = ImageConfig {
            working_dir: "/img".into(),
            ..Default::default()
        };
        let cfg = ContainerConfig {
            working_dir: "/cri".into(),
            ..Default::default()
        };
        assert_eq!(cwd(&img, &cfg).unwrap(), PathBuf::from("/cri"));
        assert_eq!(
            cwd(&img, &ContainerConfig::default()).unwrap(),
            PathBuf::from("/img")
        );
        assert_eq!(
            cwd(&ImageConfig::default(), &ContainerConfig::default()).unwrap(),
            PathBuf::from("/")
        );
        let cfg = ContainerConfig {
            working_dir: "rel".into(),
            ..Default::default()
        };
        assert!(cwd(&img, &cfg)
            .unwrap_err()
            .to_string()
            .contains("working_dir"));
    }

    pub(crate) fn rootfs_with_users() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\n\
             # comment\n\
             daemon:x:1:1::/:/bin/false\n\
             app:x:1000:1001:App:/home/app:/bin/sh\n\
             broken line\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:root\n\
             wheel:x:10:root,app\n\
             appgrp:x:1001:\n\
             extra:x:2000:daemon, app\n\
             app:x:3000:app\n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn resolves_users_against_the_image() {
        let root = rootfs_with_users();
        type Want = (u32, u32, &'static [u32]);
        let cases: &[(&str, Want)] = &[
            ("", (0, 0, &[0, 10])),
            ("root", (0, 0, &[0, 10])),
            ("app", (1000, 1001, &[10, 1001, 2000])),
            ("1000", (1000, 1001, &[10, 1001, 2000])),
            ("4242", (4242, 0, &[0])),
            // An explicit group still keeps the user's memberships, as containerd does.
            ("app:wheel", (1000, 10, &[10, 2000])),
            ("1000:2000", (1000, 2000, &[10, 2000])),
            ("4242:4243", (4242, 4243, &[4243])),
        ];
        for (spec, (uid, gid, gids)) in cases {
            let got = resolve_user(root.path(), spec).unwrap();
            assert_eq!(got, (*uid, *gid, gids.to_vec()), "user {spec:?}");
        }
        for bad in ["nobody", "app:nogroup", ":0", "0:"] {
            let err = resolve_user(root.path(), bad).unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{bad}: {err}");
        }
    }

    #[test]
    fn numeric_users_work_without_passwd() {
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(resolve_user(empty.path(), "").unwrap(), (0, 0, vec![0]));
        assert_eq!(resolve_user(empty.path(), "5:6").unwrap(), (5, 6, vec![6]));
        let err = resolve_user(empty.path(), "app").unwrap_err();
        assert!(err.to_string().contains("no /etc/passwd"), "{err}");
    }

    #[test]
    fn passwd_symlink_cannot_escape_the_rootfs() {
        let outside = rootfs_with_users();
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("etc/passwd"),
            root.path().join("etc/passwd"),
        )
        .unwrap();
        // The absolute link target is resolved inside the rootfs, where it does not exist.
        resolve_user(root.path(), "app").unwrap_err();

        // A link that stays inside the rootfs is followed, `..` cannot climb out.
        std::fs::remove_file(root.path().join("etc/passwd")).unwrap();
        std::fs::create_dir(root.path().join("lib")).unwrap();
        std::fs::copy(
            outside.path().join("etc/passwd"),
            root.path().join("lib/passwd"),
        )
        .unwrap();
        std::os::unix::fs::symlink("../../../../lib/passwd", root.path().join("etc/passwd"))
            .unwrap();
        assert_eq!(resolve_user(root.path(), "app").unwrap().0, 1000);
    }

    #[test]
    fn passwd_behind_41_links_is_refused_not_read_from_the_host() {
        // /etc -> l1 -> ... -> l40 -> <host dir with a passwd>: 41 links, one
        // past the kernel's limit. The lookup fails closed with ELOOP; it must
        // not hand the last link to a plain read, which would follow it out.
        let outside = rootfs_with_users();
        let root = tempfile::tempdir().unwrap();
        for i in 1..=40 {
            let to = if i == 40 {
                outside.path().join("etc")
            } else {
                PathBuf::from(format!("l{}", i + 1))
            };
            std::os::unix::fs::symlink(to, root.path().join(format!("l{i}"))).unwrap();
        }
        std::os::unix::fs::symlink("l1", root.path().join("etc")).unwrap();
        let err = resolve_user(root.path(), "app").unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err}");
        assert!(err.to_string().contains("/etc/passwd"), "{err}");

        // A FIFO in place of /etc/passwd is refused instead of blocking.
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        nix::unistd::mkfifo(
            &root.path().join("etc/passwd"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        let err = resolve_user(root.path(), "app").unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err}");
    }

    #[test]
    fn security_context_wins_over_image_user() {
        let root = rootfs_with_users();
        let img = ImageConfig {
            user: "app".into(),
            ..Default::default()
        };
        let sc = LinuxContainerSecurityContext::default();
        let u = user(root.path(), &img, &sc).unwrap();
        assert_eq!((u.uid(), u.gid()), (1000, 1001));

        let sc = LinuxContainerSecurityContext {
            run_as_user: Some(Int64Value { value: 0 }),
            supplemental_groups: vec![3000, 10],
            ..Default::default()
        };
        let u = user(root.path(), &img, &sc).unwrap();
        assert_eq!((u.uid(), u.gid()), (0, 0));
        assert_eq!(u.additional_gids().clone().unwrap(), vec![0, 10, 3000]);

        let sc = LinuxContainerSecurityContext {
            run_as_username: "app".into(),
            run_as_group: Some(Int64Value { value: 55 }),
            ..Default::default()
        };
        let u = user(root.path(), &img, &sc).unwrap();
        assert_eq!((u.uid(), u.gid()), (1000, 55));
        assert_eq!(u.additional_gids().clone().unwrap(), vec![10, 55, 2000]);

        // Strict: only the gid and the requested groups, not the image's.
        let sc = LinuxContainerSecurityContext {
            run_as_username: "app".into(),
            supplemental_groups: vec![7],
            supplemental_groups_policy: SupplementalGroupsPolicy::Strict as i32,
            ..Default::default()
        };
        let u = user(root.path(), &img, &sc).unwrap();
        assert_eq!(u.additional_gids().clone().unwrap(), vec![7, 1001]);

        let sc = LinuxContainerSecurityContext {
            run_as_username: "ghost".into(),
            ..Default::default()
        };
        let err = user(root.path(), &img, &sc).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)));
        assert!(err.to_string().contains("run_as_username"), "{err}");

        let sc = LinuxContainerSecurityContext {
            run_as_group: Some(Int64Value { value: 1 }),
            ..Default::default()
        };
        assert!(user(root.path(), &img, &sc)
            .unwrap_err()
            .to_string()
            .contains("run_as_group"));

        let sc = LinuxContainerSecurityContext {
            run_as_user: Some(Int64Value { value: -1 }),
            ..Default::default()
        };
        assert!(user(root.path(), &img, &sc)
            .unwrap_err()
            .to_string()
            .contains("run_as_user"));
    }

    #[test]
    fn stop_signal_precedence_and_parsing() {
        let img = ImageConfig {
            stop_signal: "SIGQUIT".into(),
            ..Default::default()
        };
        let cfg = ContainerConfig::default();
        assert_eq!(stop_signal(&img, &cfg).unwrap(), libc::SIGQUIT);
        let cfg = ContainerConfig {
            stop_signal: Signal::Sigusr1 as i32,
            ..Default::default()
        };
        assert_eq!(stop_signal(&img, &cfg).unwrap(), libc::SIGUSR1);
        assert_eq!(
            stop_signal(&ImageConfig::default(), &ContainerConfig::default()).unwrap(),
            libc::SIGTERM
        );
        let cfg = ContainerConfig {
            stop_signal: Signal::Sigrtminplus3 as i32,
            ..Default::default()
        };
        assert_eq!(stop_signal(&img, &cfg).unwrap(), 37);
        let cfg = ContainerConfig {
            stop_signal: Signal::Sigrtmax as i32,
            ..Default::default()
        };
        assert_eq!(stop_signal(&img, &cfg).unwrap(), 64);
        for (name, want) in [
            ("QUIT", 3),
            ("3", 3),
            ("sigint", 2),
            ("SIGRTMIN+1", 35),
            ("RTMAX-2", 62),
            ("SIGCLD", libc::SIGCHLD),
        ] {
            assert_eq!(parse_signal(name), Some(want), "{name}");
        }
        for bad in ["SIGFOO", "0", "65", "RTMIN+40", ""] {
            assert_eq!(parse_signal(bad), None, "{bad}");
        }
        let img = ImageConfig {
            stop_signal: "NOPE".into(),
            ..Default::default()
        };
        assert!(stop_signal(&img, &ContainerConfig::default())
            .unwrap_err()
            .to_string()
            .contains("StopSignal"));
        let cfg = ContainerConfig {
            stop_signal: 999,
            ..Default::default()
        };
        assert!(stop_signal(&img, &cfg)
            .unwrap_err()
            .to_string()
            .contains("stop_signal"));
    }
}

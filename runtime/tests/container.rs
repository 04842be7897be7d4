//! Root tests against the real kernel: one container per test, busybox rootfs.

mod common;

use berth_runtime::{Container, Status};
use common::*;
use serde_json::json;
use std::path::Path;

#[test]
fn container_is_pid1_with_own_hostname_and_rootfs() {
    if !can_run() {
        return;
    }
    let mut f = Fixture::new("isolation");
    std::fs::write(f.rootfs().join("marker"), "inside\n").unwrap();
    f.spec["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.msgmax": "4321"});
    f.args("echo pid=$$; hostname; ls /proc | grep -c '^[0-9]'; cat /marker; [ -e /work ] && echo has-work || echo no-work; ls /dev/null /dev/zero /dev/urandom >/dev/null && echo devs-ok; cat /proc/timer_list 2>&1 | wc -c; cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/msgmax; exit 7");
    let st = f.run();
    assert_eq!(st.exit.as_ref().unwrap().code, 7);
    assert_eq!(st.exit.as_ref().unwrap().signal, None);
    let out = f.log_lines("stdout");
    assert_eq!(out[0], "pid=1");
    assert_eq!(out[1], "berth-test");
    let visible: u32 = out[2].parse().unwrap();
    assert!(visible <= 4, "container sees {visible} processes");
    assert_eq!(out[3], "inside");
    assert_eq!(out[4], "no-work");
    assert_eq!(out[5], "devs-ok");
    assert_eq!(out[6], "0", "masked /proc/timer_list must read empty");
    assert_eq!(&out[7..9], ["1", "4321"]);
    assert_ne!(
        std::fs::read_to_string("/proc/sys/kernel/msgmax")
            .unwrap()
            .trim(),
        "4321"
    );
}

#[test]
fn container_holds_only_its_stdio_and_leads_its_own_session() {
    // The init closes what it inherited from the monitor early but takes its
    // stdio and session only after `go`: neither step may be lost.
    if !can_run() {
        return;
    }
    let mut f = Fixture::new("fds");
    // pid 1 itself lists its fds (ls's own directory fd is the 3): a child
    // looking at pid 1 could catch the shell's pipes or saved fds instead.
    f.args("cut -d' ' -f6 /proc/1/stat; echo err >&2; exec ls /proc/self/fd");
    let st = f.run();
    assert_eq!(st.exit.unwrap().code, 0, "{}", f.log());
    assert_eq!(f.log_lines("stdout"), vec!["1", "0", "1", "2", "3"]);
    assert_eq!(f.log_lines("stderr"), vec!["err"]);
}

#[test]
fn exit_codes_and_signals_are_recorded() {
    if !can_run() {
        return;
    }
    let mut f = Fixture::new("signal");
    f.args("sleep 1000");
    let c = f.create();
    assert_eq!(c.state().unwrap().status, Status::Created);
    c.start().unwrap();
    let st = c.state().unwrap();
    assert_eq!(st.status, Status::Running);
    assert!(st.started_at.is_some());
    assert!(c.start().is_err(), "second start must fail");
    assert!(
        c.delete(false).is_err(),
        "delete of a running container needs force"
    );
    c.kill(libc::SIGKILL, false).unwrap();
    let st = wait_stopped(&c);
    let exit = st.exit.unwrap();
    assert_eq!(
        (exit.code, exit.signal, exit.oom_killed),
        (137, Some(9), false)
    );
    assert!(exit.finished_at >= st.created_at);
    c.delete(false).unwrap();
    assert!(!f.state_dir().exists());
    assert!(!f.cgroup_exists());
    c.delete(false).unwrap();
}

#[test]
fn log_holds_every_line_in_cri_format_and_splits_long_lines() {
    if !can_run() {
        return;
    }
    let mut f = Fixture::new("log");
    f.args("i=0; while [ $i -lt 200 ]; do echo out$i; echo err$i >&2; i=$((i+1)); done; head -c 102400 /dev/zero | tr '\\0' a; echo; printf tail");
    let st = f.run();
    assert_eq!(st.exit.unwrap().code, 0);
    let log = f.log();
    for line in log.lines() {
        let parts: Vec<&str> = line.splitn(4, ' ').collect();
        assert_eq!(parts.len(), 4, "{line}");
        assert!(parts[0].ends_with('Z') && parts[0].contains('T'), "{line}");
        assert!(parts[1] == "stdout" || parts[1] == "stderr");
        assert!(parts[2] == "F" || parts[2] == "P");
    }
    let out = f.log_lines("stdout");
    let err = f.log_lines("stderr");
    let expect_out: Vec<String> = (0..200).map(|i| format!("out{i}")).collect();
    let expect_err: Vec<String> = (0..200).map(|i| format!("err{i}")).collect();
    assert_eq!(&out[..200], &expect_out[..]);
    assert_eq!(err, expect_err);
    // The 100 KiB line: 6 partial records of 16 KiB and a final one.
    let long: Vec<(&str, usize)> = log
        .lines()
        .filter(|l| l.contains(" stdout ") && l.ends_with("aaaa"))
        .map(|l| {
            let p: Vec<&str> = l.splitn(4, ' ').collect();
            (p[2], p[3].len())
        })
        .collect();
    assert_eq!(long.len(), 7, "{long:?}");
    assert!(long[..6].iter().all(|(t, n)| *t == "P" && *n == 16384));
    assert_eq!(long[6], ("F", 102400 - 6 * 16384));
    assert_eq!(out.last().unwrap(), "tail");
}

#[test]
fn memory_limit_oom_kill_is_recorded() {
    if !can_run() {
        return;
    }
    let mut f = Fixture::new("oom");
    f.args("tail /dev/zero");
    let limit = 32i64 << 20;
    f.spec["linux"]["resources"]["memory"] = json!({"limit": limit, "swap": limit});
    let c = f.create();
    let lim = std::fs::read_to_string(
        Path::new("/sys/fs/cgroup/memory")
            .join(f.cgroup_rel())
            .join("memory.limit_in_bytes"),
    )
    .unwrap();
    assert_eq!(lim.trim(), limit.to_string());
    c.start().unwrap();
    let exit = wait_stopped(&c).exit.unwrap();
    assert!(exit.oom_killed, "{exit:?}");
    assert_eq!(exit.signal, Some(9));
}

#[test]
fn pids_limit_stops_a_fork_bomb() {
    if !can_run() {
        return;
    }
    let mut f = Fixture::new("pids");
    // The inner shell forks until the limit refuses; the outer one reports and
    // then waits without forking (exec).
    f.args("sh -c 'while :; do sleep 1000 & done' 2>/dev/null; echo inner=$?; exec sleep 1000");
    f.spec["linux"]["resources"]["pids"] = json!({"limit": 10});
    let c = f.create();
    c.start().unwrap();
    wait_for("the fork bomb to hit the limit", || {
        f.log().contains("inner=")
    });
    let pids = c.stats().unwrap().pids;
    assert!(
        (2..=10).contains(&pids),
        "{pids} processes under a pids limit of 10"
    );
    assert_ne!(f.log_lines("stdout")[0], "inner=0");
    c.kill(libc::SIGKILL, false).unwrap();
    wait_stopped(&c);
}

#[test]
fn readonly_rootfs_refuses_writes() {
    if !can_run() {
        return;
    }
    let mut f = Fixture::new("ro");
    f.spec["root"]["readonly"] = json!(true);
    f.args("touch /newfile && echo wrote || echo refused");
    f.run();
    assert_eq!(f.log_lines("stdout"), vec!["refused"]);
    assert!(!f.rootfs().join("newfile").exists());
}

#[test]
fn seccomp_filter_blocks_a_named_syscall() {
    if !can_run() {
        return;
    }
    // Without a cache, then compiled into one, then from the cache: the
    // program the monitor compiles ahead (and the init loads itself) must
    // behave the same each time.
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().join("seccomp");
    let cache_arg = cache_dir.to_str().unwrap();
    for (round, extra) in [
        &[][..],
        &["--seccomp-cache", cache_arg],
        &["--seccomp-cache", cache_arg],
    ]
    .into_iter()
    .enumerate()
    {
        let mut f = Fixture::new(&format!("seccomp{round}"));
        f.spec["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            // The three x86 ABIs of RuntimeDefault, and an argument rule.
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                 "args": [{"index": 0, "value": 255, "op": "SCMP_CMP_EQ"}]}
            ]
        });
        f.args("mkdir /tmp/d 2>&1; [ -d /tmp/d ] && echo made || echo blocked; touch /tmp/f && echo touched");
        let out = f.create_raw(extra);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let c = Container::load(&f.state_dir()).unwrap();
        c.start().unwrap();
        wait_stopped(&c);
        let out = f.log_lines("stdout");
        assert!(
            out[0].contains("Operation not permitted"),
            "round {round}: {out:?}"
        );
        assert_eq!(&out[1..], ["blocked", "touched"], "round {round}");
        let entries = std::fs::read_dir(&cache_dir)
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(entries, usize::from(round > 0), "round {round}");
    }
}

#[test]
fn chown_fails_without_cap_chown() {
    if !can_run() {
        return;
    }
    let mut f = Fixture::new("caps");
    let caps: Vec<&str> = all_caps()
        .into_iter()
        .filter(|c| *c != "CAP_CHOWN")
        .collect();
    f.spec["process"]["capabilities"] =
        json!({"bounding": caps, "effective": caps, "permitted": caps});
    f.args("touch /tmp/f; chown 1:1 /tmp/f && echo chowned || echo denied; grep CapEff /proc/self/status");
    f.run();
    let out = f.log_lines("stdout");
    assert_eq!(out[0], "denied", "{out:?}");
    let eff = u64::from_str_radix(out[1].split_whitespace().nth(1).unwrap(), 16).unwrap();
    assert_eq!(eff & 1, 0, "CAP_CHOWN (bit 0) must not be effective");
    assert_ne!(eff & (1 << 5), 0, "CAP_KILL must stay effective");
}

#[test]
fn runs_as_user_1000_with_groups_env_and_cwd() {
    if !can_run() {
        return;
    }
    let mut f = Fixture::new("user");
    f.spec["process"]["user"] =
        json!({"uid": 1000, "gid": 1000, "additionalGids": [2000, 3000], "umask": 63});
    f.spec["process"]["cwd"] = json!("/home/user");
    f.spec["process"]["env"] = json!(["PATH=/bin", "GREETING=hello world"]);
    f.spec["process"]["capabilities"] = json!({});
    f.spec["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 321, "hard": 654}]);
    f.args("id -u; id -g; id -G; pwd; echo \"$GREETING\"; umask; grep CapEff /proc/self/status; ulimit -n; ulimit -Hn");
    f.run();
    let out = f.log_lines("stdout");
    assert_eq!(out[0], "1000");
    assert_eq!(out[1], "1000");
    let groups: Vec<&str> = out[2].split_whitespace().collect();
    assert_eq!(groups, ["1000", "2000", "3000"]);
    assert_eq!(out[3], "/home/user");
    assert_eq!(out[4], "hello world");
    assert_eq!(out[5], "0077");
    assert!(out[6].ends_with("0000000000000000"), "{}", out[6]);
    assert_eq!(&out[7..9], ["321", "654"]);
}

#[test]
fn monitor_outlives_sigkill_of_the_create_caller() {
    if !can_run() {
        return;
    }
    use std::os::unix::process::CommandExt;
    let mut f = Fixture::new("detach");
    f.args("sleep 1; exit 5");
    std::fs::write(
        f.bundle().join("config.json"),
        serde_json::to_vec(&f.spec).unwrap(),
    )
    .unwrap();
    let script = format!(
        "{MONITOR} create --id {} --bundle {} --state-dir {} --log-path {}; sleep 1000",
        f.id,
        f.bundle().display(),
        f.state_dir().display(),
        f.log_path().display()
    );
    let mut caller = std::process::Command::new("sh")
        .args(["-c", &script])
        .process_group(0)
        .spawn()
        .unwrap();
    wait_for("state.json", || f.state_dir().join("state.json").exists());
    let c = Container::load(&f.state_dir()).unwrap();
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(i32::try_from(caller.id()).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = caller.wait();
    assert_eq!(c.state().unwrap().status, Status::Created);
    c.start().unwrap();
    let exit = wait_stopped(&c)
        .exit
        .expect("the monitor recorded the exit");
    assert_eq!(exit.code, 5);
}

#[test]
fn dead_monitor_is_reported_sensibly() {
    if !can_run() {
        return;
    }
    let mut f = Fixture::new("deadmon");
    f.args("sleep 1000");
    let c = f.create();
    c.start().unwrap();
    let mon = c.state_file().monitor_pid;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(mon),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for("monitor to die", || {
        !Path::new(&format!("/proc/{mon}")).exists()
            || std::fs::read_to_string(format!("/proc/{mon}/stat"))
                .unwrap_or_default()
                .contains(") Z")
    });
    assert_eq!(c.state().unwrap().status, Status::Running);
    c.kill(libc::SIGKILL, false).unwrap();
    let st = wait_stopped(&c);
    assert_eq!(st.exit, None, "exit is unknown without a monitor");
    c.delete(false).unwrap();
    assert!(!f.cgroup_exists());
}

#[test]
fn the_monitor_that_stays_is_the_static_serve_binary_without_libc() {
    if !can_run() {
        return;
    }
    let mut f = Fixture::new("lite");
    f.args("sleep 1000");
    let c = f.create();
    c.start().unwrap();
    let mon = c.state_file().monitor_pid;
    // create reports the pid before the monitor execs berth-monitor-serve.
    wait_for("the monitor to exec berth-monitor-serve", || {
        std::fs::read_link(format!("/proc/{mon}/exe")).is_ok_and(|p| {
            p.to_string_lossy()
                .starts_with("/memfd:berth-monitor-serve")
        })
    });
    let maps = std::fs::read_to_string(format!("/proc/{mon}/maps")).unwrap();
    assert!(
        !maps.contains(".so"),
        "the serve binary maps no shared library:\n{maps}"
    );
    let comm = std::fs::read_to_string(format!("/proc/{mon}/comm")).unwrap();
    assert_eq!(comm.trim_end(), "berth-monitor");
    let cmdline = std::fs::read(format!("/proc/{mon}/cmdline")).unwrap();
    assert!(cmdline.starts_with(b"berth-monitor\0__serve\0--state-dir\0"));
    c.kill(libc::SIGKILL, false).unwrap();
    let exit = wait_stopped(&c)
        .exit
        .expect("the serve binary recorded the exit");
    assert_eq!((exit.code, exit.signal), (137, Some(libc::SIGKILL)));
    c.delete(false).unwrap();
    assert!(!f.cgroup_exists());
}

#[test]
fn stats_and_update_read_and_write_the_cgroup() {
    if !can_run() {
        return;
    }
    let mut f = Fixture::new("stats");
    f.args("sleep 1000");
    let c = f.create();
    c.start().unwrap();
    let s = c.stats().unwrap();
    assert!(s.pids >= 1);
    assert!(s.memory_usage_bytes > 0);
    assert!(s.memory_working_set_bytes <= s.memory_usage_bytes);
    let res: oci_spec::runtime::LinuxResources = serde_json::from_value(json!({
        "memory": {"limit": 64 << 20}, "cpu": {"shares": 256, "quota": 50000, "period": 100000},
        "pids": {"limit": 50}
    }))
    .unwrap();
    c.update(&res).unwrap();
    let rd = |ctl: &str, file: &str| {
        std::fs::read_to_string(
            Path::new("/sys/fs/cgroup")
                .join(ctl)
                .join(f.cgroup_rel())
                .join(file),
        )
        .unwrap()
        .trim()
        .to_string()
    };
    assert_eq!(
        rd("memory", "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    assert_eq!(rd("cpu", "cpu.shares"), "256");
    assert_eq!(rd("cpu", "cpu.cfs_quota_us"), "50000");
    assert_eq!(rd("pids", "pids.max"), "50");
    c.delete(true).unwrap();
    assert!(!f.state_dir().exists());
    assert!(!f.cgroup_exists());
}

fn assert_clean_failure(f: &Fixture, extra: &[&str], expect: &str) {
    let out = f.create_raw(extra);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(expect), "stderr {err:?} lacks {expect:?}");
    assert_eq!(err.trim().lines().count(), 1, "one-line error: {err:?}");
    assert!(out.stdout.is_empty());
    assert!(!f.state_dir().exists(), "state dir left behind");
    assert!(!f.cgroup_exists(), "cgroup left behind");
    assert!(!f.log_path().exists(), "log file left behind");
}

#[test]
fn bad_specs_fail_naming_the_field_and_leave_nothing() {
    if !can_run() {
        return;
    }
    let mut f = Fixture::new("badns");
    f.spec["linux"]["namespaces"][1] = json!({"type": "network", "path": "/proc/999999999/ns/net"});
    assert_clean_failure(
        &f,
        &[],
        "linux.namespaces[1].path: /proc/999999999/ns/net does not exist",
    );

    let f = Fixture::new("badlog");
    assert_clean_failure(
        &f,
        &["--log-path", "/proc/1/nope/c.log"],
        "--log-path: /proc/1/nope",
    );

    let mut f = Fixture::new("badcap");
    f.spec["process"]["capabilities"]["effective"] = json!(["CAP_KILL", "CAP_NOT_REAL"]);
    assert_clean_failure(
        &f,
        &[],
        "process.capabilities.effective[1]: unknown capability",
    );

    let mut f = Fixture::new("badmount");
    f.spec["mounts"][0]["destination"] = json!("proc");
    assert_clean_failure(&f, &[], "mounts[0].destination: proc is not absolute");

    // These fail after the cgroup exists and the init was cloned.
    let mut f = Fixture::new("noexe");
    f.spec["process"]["args"] = json!(["/bin/does-not-exist"]);
    assert_clean_failure(&f, &[], "process.args[0]: /bin/does-not-exist");

    let mut f = Fixture::new("badmountsrc");
    f.spec["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/x", "type": "nosuchfs", "source": "none"}));
    assert_clean_failure(&f, &[], "mounts[6]: mount nosuchfs on");

    let mut f = Fixture::new("oomadj");
    f.spec["process"]["oomScoreAdj"] = json!(-1000);
    let cur: i32 = std::fs::read_to_string("/proc/self/oom_score_adj")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    if cur > -1000
        && !caps::has_cap(
            None,
            caps::CapSet::Effective,
            caps::Capability::CAP_SYS_RESOURCE,
        )
        .unwrap()
    {
        assert_clean_failure(&f, &[], "process.oomScoreAdj: cannot lower oom_score_adj");
        // With the option, the value is clamped and the container runs.
        let out = f.create_raw(&["--restrict-oom-score-adj"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn init_failing_while_the_monitor_makes_its_cgroup_is_reported_and_cleaned_up() {
    // The init starts its set-up while the monitor creates the cgroup and
    // moves it there; an init that fails early may already be dead when the
    // monitor writes its pid. Its own message must win, and nothing stay.
    if !can_run() {
        return;
    }
    for i in 0..5 {
        let mut f = Fixture::new(&format!("early-sysctl{i}"));
        f.spec["linux"]["sysctl"] = json!({"net.berth.no_such_key": "1"});
        assert_clean_failure(&f, &[], "linux.sysctl.net.berth.no_such_key: write 1");

        let mut f = Fixture::new(&format!("early-mount{i}"));
        f.spec["mounts"].as_array_mut().unwrap().insert(
            0,
            json!({"destination": "/x", "type": "nosuchfs", "source": "none"}),
        );
        assert_clean_failure(&f, &[], "mounts[0]: mount nosuchfs on");
    }
}

#[test]
fn monitor_failing_while_the_init_waits_kills_the_init_and_cleans_up() {
    if !can_run() || !Path::new("/sys/fs/cgroup/cpuset").is_dir() {
        return;
    }
    let mut f = Fixture::new("badcpuset");
    f.spec["linux"]["resources"]["cpu"] = json!({"cpus": "4000-4001"});
    f.args("exec sleep 1000");
    assert_clean_failure(&f, &[], "cpuset.cpus");
    // The init was cloned before the cgroup write failed: it must be gone
    // (it and the monitor carry the id in their command line).
    wait_for("no process left with the container's id", || {
        !std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&f.id))
                .unwrap_or(false)
        })
    });
}

#[test]
fn device_cgroup_and_readonly_paths_are_enforced() {
    if !can_run() {
        return;
    }
    let mut f = Fixture::new("devices");
    // The node exists in the container but the device cgroup (deny-all plus the
    // defaults) refuses it; an allowed spec device works.
    f.spec["linux"]["devices"] = json!([
        {"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11, "fileMode": 420},
        {"path": "/dev/mem2", "type": "c", "major": 1, "minor": 3, "fileMode": 438, "uid": 1000, "gid": 1000}
    ]);
    f.args("head -c1 /dev/kmsg >/dev/null 2>&1 && echo kmsg-open || echo kmsg-denied; echo x > /dev/mem2 && echo mem2-ok; stat -c '%u %g %a' /dev/mem2; echo 5 > /proc/sys/kernel/msgmax 2>/dev/null && echo sys-rw || echo sys-ro");
    f.run();
    assert_eq!(
        f.log_lines("stdout"),
        vec!["kmsg-denied", "mem2-ok", "1000 1000 666", "sys-ro"]
    );
}

#[test]
fn systemd_style_cgroups_path_maps_to_slices() {
    if !can_run() {
        return;
    }
    let mut f = Fixture::new("slice");
    let slice = format!("berthtest-{}.slice", std::process::id());
    f.spec["linux"]["cgroupsPath"] = json!(format!("{slice}:cri-berth:{}", f.id));
    f.spec["linux"]["resources"]["pids"] = json!({"limit": 77});
    f.args("exec sleep 1000");
    let c = f.create();
    let dir = Path::new("/sys/fs/cgroup/pids")
        .join("berthtest.slice")
        .join(&slice)
        .join(format!("cri-berth-{}.scope", f.id));
    assert_eq!(
        std::fs::read_to_string(dir.join("pids.max"))
            .unwrap()
            .trim(),
        "77"
    );
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap();
    assert_eq!(procs.trim(), c.pid().to_string());
    c.delete(true).unwrap();
    assert!(!dir.exists());
    for ctl in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let _ = std::fs::remove_dir(ctl.path().join("berthtest.slice").join(&slice));
        let _ = std::fs::remove_dir(ctl.path().join("berthtest.slice"));
    }
}

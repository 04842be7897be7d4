//! The `berth` CLI end to end: the real binary against a live berthd and a local
//! registry, checking crictl's output shapes (column headers, id widths, JSON
//! field names), exit codes and the log reader.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_integration::berth_cli::BerthCli;
use berth_integration::env::TestEnv;
use berth_integration::{skip, skip_if, wait};

/// Cells of a table line: columns are separated by at least three blanks.
fn cells(line: &str) -> Vec<String> {
    line.split("   ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn is_hex_id(s: &str, len: usize) -> bool {
    s.len() == len && s.chars().all(|c| c.is_ascii_hexdigit())
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

async fn start_env() -> TestEnv {
    TestEnv::start_for_pods_unpulled().await.unwrap()
}

fn pod_json(logs: &Path, name: &str) -> String {
    // crictl's snake_case spelling, as in its documentation's pod-config.json.
    format!(
        r#"{{
  "metadata": {{"name": "{name}", "namespace": "cli-ns", "attempt": 1, "uid": "uid-{name}"}},
  "log_directory": "{}",
  "linux": {{"security_context": {{"namespace_options": {{"pid": 1}}}}}}
}}"#,
        logs.display()
    )
}

fn container_yaml(image: &str, name: &str, script: &str) -> String {
    format!(
        "metadata:\n  name: {name}\nimage:\n  image: {image}\ncommand: [sh, -c, {script:?}]\nlog_path: {name}.log\n"
    )
}

/// Waits until `f` returns Some, or panics after 15 s.
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    wait::until_blocking(what, Duration::from_secs(15), || f().ok_or("not yet"))
}

/// What `child` wrote to its piped stdout so far, read on a thread as it
/// comes; the thread ends with the stream.
fn stdout_so_far(child: &mut Child) -> (Arc<Mutex<String>>, std::thread::JoinHandle<()>) {
    let mut out = child.stdout.take().expect("stdout is piped");
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = out.read(&mut buf) {
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    (text, reader)
}

#[tokio::test]
async fn crictl_workflow_through_the_berth_cli() {
    skip_if!(skip::no_pod_env());
    let env = start_env().await;
    let berth = BerthCli::for_env(&env);
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let busybox = env.image("busybox");
    let (repo, tag) = busybox.rsplit_once(':').unwrap();

    // pull: crictl's message; no spinner when stderr is not a terminal.
    let out = berth.output(&["pull", &busybox]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let image_ref = stdout
        .strip_prefix("Image is up to date for ")
        .unwrap_or_else(|| panic!("pull printed {stdout:?}"))
        .trim()
        .to_string();
    assert!(image_ref.starts_with("sha256:"), "{image_ref}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // images: header, one row per tag, 13-char id, base-1000 size.
    let images = berth.ok(&["images"]);
    let mut lines = images.lines();
    assert_eq!(
        cells(lines.next().unwrap()),
        ["IMAGE", "TAG", "IMAGE ID", "SIZE"]
    );
    let row = lines
        .map(cells)
        .find(|c| c[0] == repo)
        .unwrap_or_else(|| panic!("no {repo} row in\n{images}"));
    assert_eq!(row[1], tag);
    assert_eq!(row[2], image_ref.trim_start_matches("sha256:")[..13]);
    assert!(
        ["B", "kB", "MB"].iter().any(|u| row[3]
            .strip_suffix(u)
            .is_some_and(|n| n.parse::<f64>().is_ok())),
        "size {:?}",
        row[3]
    );
    assert!(berth.ok(&["images", "-q"]).lines().any(|l| l == image_ref));
    let inspecti: serde_json::Value =
        serde_json::from_str(&berth.ok(&["inspecti", &busybox])).unwrap();
    assert_eq!(inspecti["status"]["id"], image_ref.as_str());
    assert!(inspecti["status"]["repoTags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t == busybox.as_str()));

    // runp / create / start.
    let pod_cfg = write(dir.path(), "pod.json", &pod_json(&logs, "cli-pod"));
    let pod_id = berth.id(&["runp", &pod_cfg]);
    assert!(is_hex_id(&pod_id, 64), "runp printed {pod_id:?}");
    let c_cfg = write(
        dir.path(),
        "c.yaml",
        &container_yaml(
            &busybox,
            "app",
            "echo hello-out; echo hello-err >&2; exec sleep 3600",
        ),
    );
    let cid = berth.id(&["create", &pod_id, &c_cfg, &pod_cfg]);
    assert!(is_hex_id(&cid, 64), "create printed {cid:?}");
    // Created containers show only with -a.
    assert!(!berth.ok(&["ps", "-q"]).contains(&cid));
    let ps_all = berth.ok(&["ps", "-a"]);
    let row = ps_all
        .lines()
        .skip(1)
        .map(cells)
        .find(|c| cid.starts_with(&c[0]))
        .unwrap();
    assert_eq!(row[3], "Created");
    assert_eq!(berth.ok(&["start", &cid]).trim(), cid);

    // ps: crictl's columns and id widths.
    let ps = berth.ok(&["ps"]);
    let mut lines = ps.lines();
    assert_eq!(
        cells(lines.next().unwrap()),
        [
            "CONTAINER",
            "IMAGE",
            "CREATED",
            "STATE",
            "NAME",
            "ATTEMPT",
            "POD ID",
            "POD"
        ]
    );
    let row = lines
        .map(cells)
        .find(|c| c[0] == cid[..13])
        .unwrap_or_else(|| panic!("{ps}"));
    assert_eq!(row[1], busybox);
    assert!(row[2].ends_with(" ago"), "{:?}", row[2]);
    assert_eq!(row[3], "Running");
    assert_eq!(row[4], "app");
    assert_eq!(row[5], "0");
    assert_eq!(row[6], pod_id[..13]);
    assert_eq!(row[7], "cli-pod");
    assert!(berth.ok(&["ps", "--no-trunc"]).contains(&cid));
    assert_eq!(berth.ok(&["ps", "-q", "--name", "^ap"]).trim(), cid);
    assert_eq!(berth.ok(&["ps", "-q", "--name", "nomatch"]).trim(), "");
    let ps_json: serde_json::Value =
        serde_json::from_str(&berth.ok(&["ps", "-o", "json"])).unwrap();
    assert_eq!(ps_json["containers"][0]["id"], cid.as_str());
    assert_eq!(ps_json["containers"][0]["podSandboxId"], pod_id.as_str());

    // pods.
    let pods = berth.ok(&["pods"]);
    let mut lines = pods.lines();
    assert_eq!(
        cells(lines.next().unwrap()),
        [
            "POD ID",
            "CREATED",
            "STATE",
            "NAME",
            "NAMESPACE",
            "ATTEMPT",
            "RUNTIME"
        ]
    );
    let row = cells(lines.next().unwrap());
    assert_eq!(row[0], pod_id[..13]);
    assert!(row[1].ends_with(" ago"));
    assert_eq!(row[2..], ["Ready", "cli-pod", "cli-ns", "1", "(default)"]);
    assert_eq!(berth.ok(&["pods", "-q"]).trim(), pod_id);
    assert_eq!(berth.ok(&["pods", "-q", "--namespace", "other"]).trim(), "");
    assert_eq!(berth.ok(&["pods", "-q", "--state", "ready"]).trim(), pod_id);
    let pods_json: serde_json::Value =
        serde_json::from_str(&berth.ok(&["pods", "-o", "json"])).unwrap();
    assert_eq!(pods_json["items"][0]["id"], pod_id.as_str());
    assert_eq!(pods_json["items"][0]["state"], "SANDBOX_READY");
    let pods_yaml = berth.ok(&["pods", "-o", "yaml"]);
    assert!(pods_yaml.contains(&format!("id: {pod_id}")), "{pods_yaml}");

    // exec -s passes the exit code and both streams through.
    let out = berth.output(&[
        "exec",
        "-s",
        &cid,
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");
    let out = berth.output(&["exec", "-s", &cid[..13], "true"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // -t needs a terminal on stdin, as with crictl (a pipe's EOF never reaches
    // a remote pty, so the session would hang).
    let out = berth.output(&["exec", "-it", &cid, "sh"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("input is not a terminal"),
        "{out:?}"
    );

    // logs: stdout lines to stdout, stderr lines to stderr.
    let out = wait_for("both log lines", || {
        let out = berth.output(&["logs", &cid]);
        (out.status.success() && !out.stdout.is_empty() && !out.stderr.is_empty()).then_some(out)
    });
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello-out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "hello-err\n");
    let out = berth.output(&["logs", "--tail", "0", &cid]);
    assert!(out.status.success() && out.stdout.is_empty() && out.stderr.is_empty());
    let stamped = berth.ok(&["logs", "-t", &cid]);
    let (ts, text) = stamped.trim_end().split_once(' ').unwrap();
    assert_eq!(text, "hello-out");
    assert!(ts.ends_with('Z') || ts.contains('+'), "{ts}");
    assert_eq!(
        berth.ok(&["logs", "--since", "2000-01-01T00:00:00Z", &cid]),
        "hello-out\n"
    );
    assert_eq!(
        berth.ok(&["logs", "--since", "2999-01-01T00:00:00Z", &cid]),
        ""
    );

    // inspect: protobuf JSON names, verbose info inline, short ids accepted.
    let doc: serde_json::Value = serde_json::from_str(&berth.ok(&["inspect", &cid[..13]])).unwrap();
    assert_eq!(doc["status"]["id"], cid.as_str());
    assert_eq!(doc["status"]["state"], "CONTAINER_RUNNING");
    let created = doc["status"]["createdAt"].as_str().unwrap();
    assert!(created.parse::<i64>().unwrap() > 0);
    assert!(doc["info"].is_object(), "{doc}");
    let poddoc: serde_json::Value =
        serde_json::from_str(&berth.ok(&["inspectp", &pod_id])).unwrap();
    assert_eq!(poddoc["status"]["id"], pod_id.as_str());
    assert_eq!(poddoc["status"]["state"], "SANDBOX_READY");
    assert_eq!(poddoc["status"]["metadata"]["name"], "cli-pod");
    let yaml = berth.ok(&["inspect", "-o", "yaml", &cid]);
    assert!(yaml.contains("createdAt:"), "{yaml}");
    let out = berth.output(&["inspect", "-o", "go-template", &cid]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("go-template"));

    // logs -f follows a container until it exits.
    let c2_cfg = write(
        dir.path(),
        "c2.yaml",
        &container_yaml(
            &busybox,
            "counter",
            "for i in 1 2 3; do echo line$i; sleep 0.4; done",
        ),
    );
    let c2 = berth.id(&["create", &pod_id, &c2_cfg, &pod_cfg]);
    berth.ok(&["start", &c2]);
    let started = Instant::now();
    let followed = berth.ok(&["logs", "-f", &c2]);
    assert_eq!(followed, "line1\nline2\nline3\n");
    assert!(started.elapsed() < Duration::from_secs(10));

    // stop / rm.
    assert_eq!(berth.ok(&["stop", "-t", "1", &cid]).trim(), cid);
    let ps_all = berth.ok(&["ps", "-a"]);
    let row = ps_all
        .lines()
        .skip(1)
        .map(cells)
        .find(|c| c[0] == cid[..13])
        .unwrap();
    assert_eq!(row[3], "Exited");
    // A followed log of an exited container ends at once.
    assert_eq!(berth.ok(&["logs", "-f", &cid]), "hello-out\n");
    assert_eq!(berth.ok(&["rm", &cid]).trim(), cid);
    assert_eq!(berth.ok(&["rm", &c2]).trim(), c2);
    assert_eq!(berth.ok(&["ps", "-a", "-q"]).trim(), "");
    // RemoveContainer is idempotent (CRI), but the container is gone.
    let out = berth.output(&["inspect", &cid]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("berth: ") && err.contains(&cid), "{err}");

    // stopp / rmp.
    assert_eq!(
        berth.ok(&["stopp", &pod_id]).trim(),
        format!("Stopped sandbox {pod_id}")
    );
    assert_eq!(
        berth.ok(&["pods", "-q", "--state", "notready"]).trim(),
        pod_id
    );
    assert_eq!(
        berth.ok(&["rmp", &pod_id]).trim(),
        format!("Removed sandbox {pod_id}")
    );
    assert_eq!(berth.ok(&["pods", "-q"]).trim(), "");

    // run = runp + create + start; rmp -f -a cleans up a running pod.
    let pod2_cfg = write(dir.path(), "pod2.json", &pod_json(&logs, "run-pod"));
    let c3_cfg = write(
        dir.path(),
        "c3.yaml",
        &container_yaml(&busybox, "runner", "exec sleep 3600"),
    );
    let c3 = berth.id(&["run", &c3_cfg, &pod2_cfg]);
    assert!(is_hex_id(&c3, 64), "run printed {c3:?}");
    assert_eq!(berth.ok(&["ps", "-q"]).trim(), c3);
    let out = berth.output(&["rm", &c3]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "rm of a running container needs -f"
    );
    assert_eq!(berth.ok(&["rm", "-f", &c3]).trim(), c3);
    let rmp = berth.ok(&["rmp", "-f", "-a"]);
    assert!(rmp.starts_with("Removed sandbox "), "{rmp}");
    assert_eq!(berth.ok(&["pods", "-q"]).trim(), "");

    // imagefsinfo and rmi.
    let fs: serde_json::Value = serde_json::from_str(&berth.ok(&["imagefsinfo"])).unwrap();
    assert!(fs["status"]["imageFilesystems"].is_array(), "{fs}");
    assert_eq!(
        berth.ok(&["rmi", &busybox]).trim(),
        format!("Deleted: {busybox}")
    );
    assert!(!berth.ok(&["images", "-q"]).contains(&image_ref));
    let out = berth.output(&["rmi", &busybox]);
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test]
async fn version_info_and_streaming_verbs_on_unknown_ids() {
    skip_if!(skip::no_pod_env());
    let env = start_env().await;
    let berth = BerthCli::for_env(&env);
    let version = berth.ok(&["version"]);
    assert!(version.starts_with("Version:  "), "{version}");
    assert!(version.contains("RuntimeApiVersion:  v1"), "{version}");
    let info: serde_json::Value = serde_json::from_str(&berth.ok(&["info"])).unwrap();
    let conditions = info["status"]["conditions"].as_array().unwrap();
    assert!(
        conditions.iter().any(|c| c["type"] == "RuntimeReady"),
        "{info}"
    );
    for args in [
        &["attach", "abc"][..],
        &["port-forward", "abc", "8080:80"],
        &["exec", "abc", "true"],
    ] {
        let out = berth.output(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("berth: ") && err.contains("\"abc\"") && err.contains("not found"),
            "{err}"
        );
    }
    // On a terminal, pull shows a spinner with the elapsed time on stderr.
    if Path::new("/usr/bin/script").exists() {
        let busybox = env.image("busybox");
        let cmd = format!(
            "{} -r {} pull {busybox}",
            berth.binary.display(),
            berth.endpoint
        );
        let out = Command::new("/usr/bin/script")
            .args(["-qec", &cmd, "/dev/null"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(
            text.contains(&format!("Pulling image {busybox} (")),
            "{text:?}"
        );
        assert!(text.contains("Image is up to date for sha256:"), "{text:?}");
    }
    // A daemon that is not there is a clear error, not a hang.
    let out = Command::new(&berth.binary)
        .args(["-r", "unix:///nonexistent/berth.sock", "-t", "1s", "ps"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/berth.sock"));
}

#[tokio::test]
async fn stats_events_image_filter_and_prune() {
    skip_if!(skip::no_pod_env());
    let env = start_env().await;
    let berth = BerthCli::for_env(&env);
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let busybox = env.image("busybox");
    let configured = env.image("configured");
    berth.ok(&["pull", &busybox]);
    berth.ok(&["pull", &configured]);

    // The image filter argument narrows the table to one repository.
    let (busybox_repo, _) = busybox.rsplit_once(':').unwrap();
    let filtered = berth.ok(&["images", busybox_repo]);
    let rows: Vec<Vec<String>> = filtered.lines().skip(1).map(cells).collect();
    assert_eq!(rows.len(), 1, "{filtered}");
    assert_eq!(rows[0][0], busybox_repo);
    let digests = berth.ok(&["images", "--digests", busybox_repo]);
    assert_eq!(
        cells(digests.lines().next().unwrap()),
        ["IMAGE", "TAG", "DIGEST", "IMAGE ID", "SIZE"]
    );

    // events: one JSON document per event, streamed while things happen.
    let mut events = Command::new(&berth.binary)
        .args(["-r", &berth.endpoint, "events"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (seen, reader) = stdout_so_far(&mut events);
    // Subscribed: berthd answered the call (it subscribes before it answers).
    wait_for("berthd to answer GetContainerEvents", || {
        env.berthd
            .log()
            .lines()
            .any(|l| l.contains("GetContainerEvents") && l.contains("ok elapsed_us"))
            .then_some(())
    });

    let pod_cfg = write(dir.path(), "pod.json", &pod_json(&logs, "stats-pod"));
    let pod_id = berth.id(&["runp", &pod_cfg]);
    let c_cfg = write(
        dir.path(),
        "c.yaml",
        &container_yaml(&busybox, "sleeper", "exec sleep 3600"),
    );
    let cid = berth.id(&["create", &pod_id, &c_cfg, &pod_cfg]);
    berth.ok(&["start", &cid]);

    // stats / statsp tables.
    let stats = berth.ok(&["stats"]);
    let mut lines = stats.lines();
    assert_eq!(
        cells(lines.next().unwrap()),
        ["CONTAINER", "NAME", "CPU %", "MEM", "DISK", "INODES"]
    );
    let row = lines
        .map(cells)
        .find(|c| c[0] == cid[..13])
        .unwrap_or_else(|| panic!("{stats}"));
    assert_eq!(row[1], "sleeper");
    assert!(row[2].parse::<f64>().is_ok(), "cpu {:?}", row[2]);
    assert!(row[3].ends_with('B'), "mem {:?}", row[3]);
    assert!(row[5].parse::<u64>().is_ok(), "inodes {:?}", row[5]);
    let json: serde_json::Value =
        serde_json::from_str(&berth.ok(&["stats", "-o", "json"])).unwrap();
    assert_eq!(json["stats"][0]["attributes"]["id"], cid.as_str());
    let statsp = berth.ok(&["statsp"]);
    let mut lines = statsp.lines();
    assert_eq!(
        cells(lines.next().unwrap()),
        ["POD", "POD ID", "CPU %", "MEM"]
    );
    let row = cells(lines.next().unwrap_or_else(|| panic!("{statsp}")));
    assert_eq!(row[0], "stats-pod");
    assert_eq!(row[1], pod_id[..13]);

    wait_for("the container's events", || {
        let text = seen.lock().unwrap();
        (text.contains(&cid) && text.contains("CONTAINER_STARTED_EVENT")).then_some(())
    });
    events.kill().unwrap();
    events.wait().unwrap();
    reader.join().unwrap();
    let text = seen.lock().unwrap().clone();
    let docs: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&text)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("events output is not a JSON stream ({e}):\n{text}"));
    let kinds: Vec<&str> = docs
        .iter()
        .filter(|d| d["containerId"] == cid.as_str())
        .filter_map(|d| d["containerEventType"].as_str())
        .collect();
    assert!(
        kinds.contains(&"CONTAINER_CREATED_EVENT"),
        "{kinds:?}\n{text}"
    );
    assert!(kinds.contains(&"CONTAINER_STARTED_EVENT"), "{kinds:?}");

    // rmi --prune removes only images no container uses.
    let pruned = berth.ok(&["rmi", "--prune"]);
    assert_eq!(pruned.trim(), format!("Deleted: {configured}"));
    assert!(berth.ok(&["images", "-q"]).lines().count() == 1);

    // Short ids work everywhere an id goes, printed back as given.
    let json: serde_json::Value =
        serde_json::from_str(&berth.ok(&["stats", "-o", "json", "--id", &cid[..13]])).unwrap();
    assert_eq!(json["stats"][0]["attributes"]["id"], cid.as_str());
    assert_eq!(json["stats"].as_array().unwrap().len(), 1);
    assert_eq!(berth.ok(&["ps", "-q", "--pod", &pod_id[..13]]).trim(), cid);
    assert_eq!(berth.ok(&["stop", &cid[..13]]).trim(), &cid[..13]);
    assert_eq!(berth.ok(&["logs", &cid[..13]]), "");
    assert_eq!(berth.ok(&["rm", &cid[..13]]).trim(), &cid[..13]);
    assert_eq!(berth.ok(&["ps", "-a", "-q"]).trim(), "");
    assert_eq!(
        berth.ok(&["stopp", &pod_id[..13]]).trim(),
        format!("Stopped sandbox {}", &pod_id[..13])
    );
    assert_eq!(
        berth.ok(&["rmp", "-f", &pod_id[..13]]).trim(),
        format!("Removed sandbox {}", &pod_id[..13])
    );
    assert_eq!(berth.ok(&["pods", "-q"]).trim(), "");
}

#[tokio::test]
async fn logs_follow_survives_rotation() {
    skip_if!(skip::no_pod_env());
    let mut env = start_env().await;
    let berth = BerthCli::for_env(&env);
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let busybox = env.image("busybox");
    // No pull: `create` pulls a missing image itself, as crictl's does.
    assert_eq!(berth.ok(&["images", "-q"]), "");
    let pod_cfg = write(dir.path(), "pod.json", &pod_json(&logs, "rot-pod"));
    let pod_id = berth.id(&["runp", &pod_cfg]);
    let c_cfg = write(
        dir.path(),
        "c.yaml",
        &container_yaml(
            &busybox,
            "ticker",
            "i=1; while [ $i -le 20 ]; do echo tick$i; i=$((i+1)); sleep 0.15; done",
        ),
    );
    let cid = berth.id(&["create", &pod_id, &c_cfg, &pod_cfg]);
    assert_eq!(berth.ok(&["images", "-q"]).lines().count(), 1);
    berth.ok(&["start", &cid]);
    let mut follower = Command::new(&berth.binary)
        .args(["-r", &berth.endpoint, "logs", "-f", &cid])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (followed, reader) = stdout_so_far(&mut follower);
    // Rotate the way kubelet does, once the follower is reading the first
    // file: rename, then ask the runtime to reopen.
    wait_for("the follower to print tick1", || {
        followed.lock().unwrap().contains("tick1\n").then_some(())
    });
    let log = logs.join("ticker.log");
    std::fs::rename(&log, logs.join("ticker.log.1")).unwrap();
    env.cri
        .runtime
        .reopen_container_log(berth_proto::v1::ReopenContainerLogRequest {
            container_id: cid.clone(),
        })
        .await
        .unwrap();
    follower.wait().unwrap();
    reader.join().unwrap();
    let text = followed.lock().unwrap().clone();
    let expected: String = (1..=20).map(|i| format!("tick{i}\n")).collect();
    assert_eq!(text, expected);
    // The new file holds only what came after the rotation.
    let fresh = std::fs::read_to_string(&log).unwrap();
    assert!(!fresh.contains("tick1\n"), "{fresh}");
    let out = berth.output(&["logs", "-p", &cid]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--previous is not supported"));
    let out = berth.output(&["exec", "-s", "--timeout", "1", &cid, "true"]);
    assert_eq!(out.status.code(), Some(1), "the container has exited");
    berth.ok(&["rmp", "-f", &pod_id]);
}

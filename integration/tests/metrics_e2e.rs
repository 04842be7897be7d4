//! The Prometheus endpoint of a real berthd: scraped before and after a pod
//! lifecycle, a pull and calls that fail, parsed with a Prometheus text-format
//! parser, and checked to have moved by exactly the calls made. Also the
//! OpenMetrics variant, /healthz, `berth info`, and the recovery gauges after
//! a restart with a container running.

use std::collections::HashMap;

use berth_integration::berth_cli::BerthCli;
use berth_integration::calls;
use berth_integration::client::Cri;
use berth_integration::env::{self, TestEnv, TestEnvOptions};
use berth_integration::{skip, skip_if};
use berth_proto::v1::*;
use berth_shim::streaming::client::{self, Transport};
use prometheus_parse::{Scrape, Value};

/// One parsed scrape.
struct Metrics {
    scrape: Scrape,
    text: String,
}

impl Metrics {
    /// The samples of `name` whose labels include all of `labels`.
    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a prometheus_parse::Sample> + 'a {
        self.scrape.samples.iter().filter(move |s| {
            s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
    }

    /// Sum of the counter, gauge or untyped samples of `name` with `labels`;
    /// 0 when there are none (a series not yet created).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels)
            .map(|s| match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                other => panic!("{name} is not a plain value: {other:?}"),
            })
            .sum()
    }

    /// `_count` of histogram `name` with `labels`, after checking that it
    /// equals the `+Inf` bucket and that the buckets never decrease.
    fn hist_count(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let count = self.value(&format!("{name}_count"), labels);
        let mut inf = 0.0;
        for s in self.matching(name, labels) {
            let Value::Histogram(b) = &s.value else {
                panic!("{name} is not a histogram");
            };
            assert!(
                b.windows(2).all(|w| w[0].count <= w[1].count),
                "{name}: buckets not cumulative: {b:?}"
            );
            let last = b.last().expect("buckets");
            assert!(last.less_than.is_infinite(), "{name}: no +Inf bucket");
            inf += last.count;
            assert_eq!(b.len(), 19, "{name}: 18 bounds (100 µs to 60 s) plus +Inf");
            assert_eq!(b[0].less_than, 0.0001);
            assert_eq!(b[17].less_than, 60.0);
        }
        assert_eq!(
            inf, count,
            "{name}{labels:?}: +Inf bucket != _count in\n{}",
            self.text
        );
        count
    }
}

async fn metrics_address(cri: &mut Cri) -> String {
    let s = cri
        .runtime
        .status(StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner();
    let m: serde_json::Value = serde_json::from_str(&s.info["metrics"]).unwrap();
    m["address"].as_str().unwrap().to_string()
}

async fn get(addr: &str, path: &str, accept: Option<&str>) -> (u16, String, String) {
    let mut req = reqwest::Client::new().get(format!("http://{addr}{path}"));
    if let Some(a) = accept {
        req = req.header("Accept", a);
    }
    let resp = req.send().await.unwrap();
    let code = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (code, ctype, resp.text().await.unwrap())
}

async fn scrape(addr: &str) -> Metrics {
    let (code, ctype, text) = get(addr, "/metrics", None).await;
    assert_eq!(code, 200, "{text}");
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    // Every sample belongs to a family the text declares.
    for s in &scrape.samples {
        let family = s.metric.trim_end_matches("_count").trim_end_matches("_sum");
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{} has no TYPE line",
            s.metric
        );
    }
    Metrics { scrape, text }
}

fn rpc(m: &Metrics, method: &str, code: &str) -> f64 {
    m.value(
        "berth_cri_requests_total",
        &[("method", method), ("code", code)],
    )
}

fn rpc_hist(m: &Metrics, method: &str) -> f64 {
    m.hist_count("berth_cri_request_duration_seconds", &[("method", method)])
}

/// Pods on loopback with busybox pulled, and berthd serving metrics on an
/// ephemeral loopback port.
async fn metrics_env() -> TestEnv {
    TestEnv::start_with(TestEnvOptions {
        berthd: berth_integration::berthd::BerthdOptions::default()
            .config("[metrics]\naddress = \"127.0.0.1:0\"\n"),
        ..TestEnvOptions::for_pods()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_move_by_exactly_the_calls_made() {
    skip_if!(skip::no_pod_env());
    let mut env = metrics_env().await;
    let addr = metrics_address(&mut env.cri).await;
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
        "{addr}"
    );

    // Health while serving; unknown paths are 404.
    assert_eq!(get(&addr, "/healthz", None).await.0, 200);
    assert_eq!(get(&addr, "/nope", None).await.0, 404);

    // `berth info` says where metrics are served.
    let out = BerthCli::for_env(&env).command(&["info"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("http://{addr}/metrics")),
        "berth info does not show the metrics URL:\n{stdout}"
    );

    let before = scrape(&addr).await;
    // build info and process metrics are there from the start.
    assert_eq!(
        before.value(
            "berth_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0,
        "{}",
        before.text
    );
    let commit = before
        .matching("berth_build_info", &[])
        .next()
        .and_then(|s| s.labels.get("commit").map(str::to_string))
        .unwrap();
    assert!(!commit.is_empty(), "empty commit label");
    for p in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_threads",
        "process_max_fds",
    ] {
        assert!(before.value(p, &[]) > 0.0, "{p} missing or 0");
    }
    assert!(before.value("berth_images", &[]) >= 1.0);
    assert!(before.value("berth_image_bytes", &[]) > 0.0);
    assert_eq!(
        before.value("berth_image_pulls_total", &[]),
        1.0,
        "the busybox pull"
    );

    // A pod lifecycle, a pull, and three calls that fail.
    let pod_config = env.pod_config("metrics");
    let pod = env.run_pod(&pod_config).await.unwrap();
    let ctr = env
        .run_container(
            &pod,
            &pod_config,
            env::container_config("metrics", &env.image("busybox"), &["sleep", "600"]),
        )
        .await
        .unwrap();
    let during = scrape(&addr).await;
    assert_eq!(during.value("berth_pods", &[("state", "ready")]), 1.0);
    assert_eq!(
        during.value("berth_containers", &[("state", "running")]),
        1.0
    );
    assert_eq!(
        during.value("berth_monitors_alive", &[]),
        1.0,
        "one container, one monitor"
    );
    // One exec over each streaming transport, stdin echoed back.
    for transport in [Transport::Spdy, Transport::WebSocket] {
        let url = calls::exec_url(&mut env.cri, &ctr, &["cat"], true, false).await;
        let r = client::run_and_collect(
            &url,
            transport,
            Some(b"hello\n".to_vec()),
            true,
            true,
            false,
        )
        .await
        .unwrap();
        assert_eq!(r.stdout, b"hello\n", "{transport:?}");
    }
    // The server side of a session ends just after the client's: wait for it.
    let mut streamed = scrape(&addr).await;
    for _ in 0..200 {
        if streamed.value("berth_streaming_sessions", &[]) == 0.0 {
            break;
        }
        tokio::task::yield_now().await;
        streamed = scrape(&addr).await;
    }
    assert_eq!(
        streamed.value("berth_streaming_sessions", &[]),
        0.0,
        "sessions left open"
    );
    for dir in ["in", "out"] {
        let moved = streamed.value("berth_streaming_bytes_total", &[("direction", dir)])
            - before.value("berth_streaming_bytes_total", &[("direction", dir)]);
        // Each session carries at least "hello\n" plus framing both ways.
        assert!(moved >= 12.0, "streaming bytes {dir} moved by {moved}");
    }
    calls::stop_container(&mut env.cri, &ctr, 0).await;
    calls::remove_container(&mut env.cri, &ctr).await;
    env.remove_pod(&pod).await.unwrap();
    env.pull("configured").await.unwrap();

    let missing = "0".repeat(64);
    let err = env
        .cri
        .runtime
        .container_status(ContainerStatusRequest {
            container_id: missing.clone(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    let err = env
        .cri
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: None,
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let err = env
        .cri
        .image
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: env.image("no-such-image"),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let pull_code = format!("{:?}", err.code());

    let after = scrape(&addr).await;
    let d = |f: &dyn Fn(&Metrics) -> f64| f(&after) - f(&before);

    // Each lifecycle call once, OK; the failures under their codes.
    for m in [
        "RunPodSandbox",
        "CreateContainer",
        "StartContainer",
        "StopContainer",
        "RemoveContainer",
        "StopPodSandbox",
        "RemovePodSandbox",
    ] {
        let ok = d(&|x| rpc(x, m, "OK"));
        assert_eq!(ok, 1.0, "{m} OK moved by {ok}");
    }
    assert_eq!(d(&|x| rpc(x, "ContainerStatus", "NotFound")), 1.0);
    assert_eq!(d(&|x| rpc(x, "RunPodSandbox", "InvalidArgument")), 1.0);
    assert_eq!(d(&|x| rpc(x, "PullImage", "OK")), 1.0);
    let pull_failed: f64 = after
        .matching("berth_cri_requests_total", &[("method", "PullImage")])
        .filter(|s| s.labels.get("code") != Some("OK"))
        .map(|s| match s.value {
            Value::Counter(v) => v,
            _ => 0.0,
        })
        .sum();
    assert_eq!(pull_failed, 1.0, "the failed pull ({pull_code})");

    // Histogram counts match the calls made, whatever their code.
    for (m, n) in [
        ("RunPodSandbox", 2.0),
        ("CreateContainer", 1.0),
        ("StartContainer", 1.0),
        ("StopContainer", 1.0),
        ("RemoveContainer", 1.0),
        ("StopPodSandbox", 1.0),
        ("RemovePodSandbox", 1.0),
        ("ContainerStatus", 1.0),
        ("PullImage", 2.0),
        ("Exec", 2.0),
    ] {
        let moved = d(&|x| rpc_hist(x, m));
        assert_eq!(moved, n, "{m} histogram count moved by {moved}");
    }
    // In every scrape, each method's counts over all codes equal its histogram count.
    let mut per_method: HashMap<String, f64> = HashMap::new();
    for s in after.matching("berth_cri_requests_total", &[]) {
        if let Value::Counter(v) = s.value {
            *per_method
                .entry(s.labels.get("method").unwrap().to_string())
                .or_default() += v;
        }
    }
    for (m, n) in &per_method {
        assert_eq!(rpc_hist(&after, m), *n, "{m}: counter vs histogram");
    }

    // Pulls: one more success with its bytes and time, one failure with a reason.
    assert_eq!(d(&|x| x.value("berth_image_pulls_total", &[])), 1.0);
    assert_eq!(
        d(&|x| x.hist_count("berth_image_pull_duration_seconds", &[])),
        1.0
    );
    assert!(d(&|x| x.value("berth_image_pull_bytes_total", &[])) > 0.0);
    assert_eq!(d(&|x| x.value("berth_image_pull_failures_total", &[])), 1.0);
    assert!(
        after
            .matching("berth_image_pull_failures_total", &[])
            .all(|s| s.labels.get("reason").is_some_and(|r| !r.is_empty())),
        "pull failures carry a reason"
    );
    // CNI: the pod's loopback network was set up and torn down, nothing failed.
    assert!(
        d(&|x| x.hist_count(
            "berth_cni_plugin_duration_seconds",
            &[("op", "ADD"), ("plugin", "loopback")]
        )) >= 1.0
    );
    assert!(
        d(&|x| x.hist_count(
            "berth_cni_plugin_duration_seconds",
            &[("op", "DEL"), ("plugin", "loopback")]
        )) >= 1.0
    );
    assert_eq!(after.value("berth_cni_plugin_failures_total", &[]), 0.0);
    // Nothing left running.
    assert_eq!(after.value("berth_pods", &[]), 0.0);
    assert_eq!(after.value("berth_containers", &[]), 0.0);
    assert_eq!(after.value("berth_monitors_alive", &[]), 0.0);

    // OpenMetrics when the scraper asks for it, as Prometheus does.
    let (code, ctype, text) = get(
        &addr,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3"),
    )
    .await;
    assert_eq!(code, 200);
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    assert!(text.ends_with("# EOF\n"), "OpenMetrics must end with # EOF");
    assert!(text.contains("# TYPE berth_cri_requests counter"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_reports_what_recovery_picked_up() {
    skip_if!(skip::no_pod_env());
    let mut env = metrics_env().await;
    let (pod, _ctr) = env
        .run_busybox_pod("recovered", "sleep 600", false)
        .await
        .unwrap();
    env.berthd.restart().await.unwrap();
    env.cri = env.berthd.client().await.unwrap();
    let addr = metrics_address(&mut env.cri).await;
    assert_eq!(get(&addr, "/healthz", None).await.0, 200);
    let m = scrape(&addr).await;
    assert_eq!(m.value("berth_recovered", &[("object", "pods")]), 1.0);
    assert_eq!(m.value("berth_recovered", &[("object", "containers")]), 1.0);
    assert_eq!(
        m.value("berth_recovered", &[("object", "exited_while_down")]),
        0.0
    );
    assert_eq!(m.value("berth_containers", &[("state", "running")]), 1.0);
    assert_eq!(m.value("berth_monitors_alive", &[]), 1.0);
    calls::teardown_pod(&mut env.cri, &pod).await;
}

//! Recorded kubelet 1.36 traffic replayed against berthd: every trace file in
//! `integration/kubelet-traces/` (see its README), call by call, with the
//! reference runtime's answers as the oracle. The replayer is
//! `berth_integration::replay`; its `exceptions` table names the calls where
//! Berth is right and the reference is not.

use std::path::Path;

use berth_integration::replay::{self, trace};
use berth_integration::{skip, skip_if};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_recorded_kubelet_trace_replays_on_berthd() {
    skip_if!(skip::no_bridge_pod_env());
    let files = trace::trace_files(Path::new(replay::TRACES_DIR)).unwrap();
    assert!(files.len() >= 2, "no traces in {}", replay::TRACES_DIR);
    let mut failed = Vec::new();
    for file in files {
        let report = replay::replay_file(&file).await.unwrap();
        eprintln!("{report}");
        if !report.ok() {
            failed.push(report.trace.clone());
        }
    }
    assert!(failed.is_empty(), "traces that did not replay: {failed:?}");
}

#[test]
fn every_trace_line_decodes_into_the_cri_types() {
    // The replayer sends what the kubelet sent: a trace line the proto types
    // cannot hold (a field renamed, an enum value unknown) must be caught
    // here, before any daemon runs.
    for file in trace::trace_files(Path::new(replay::TRACES_DIR)).unwrap() {
        let t = trace::Trace::load(&file).unwrap();
        assert!(!t.calls.is_empty());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for c in &t.calls {
            let err = rt.block_on(async {
                // A client on a channel that never connects: decoding happens
                // first, so only a decode error comes back as Err.
                let channel =
                    tonic::transport::Endpoint::from_static("http://127.0.0.1:1").connect_lazy();
                let cri = berth_integration::client::Cri {
                    runtime: berth_proto::v1::runtime_service_client::RuntimeServiceClient::new(
                        channel.clone(),
                    ),
                    image: berth_proto::v1::image_service_client::ImageServiceClient::new(channel),
                };
                replay::invoke::invoke(
                    cri,
                    c.rpc().to_string(),
                    c.request.clone(),
                    c.response.clone(),
                )
                .await
                .err()
            });
            assert!(
                err.is_none(),
                "{} seq {} {}: {err:?}",
                t.name(),
                c.seq,
                c.method
            );
        }
    }
}

//! The RPC surface of `proto/api.proto` must be exactly the 41 RPCs of the CRI v1
//! API of Kubernetes 1.36: a missing, extra or misnamed RPC makes the kubelet fail
//! with UNIMPLEMENTED, and a wrong streaming flag breaks the call framing.

use std::collections::BTreeSet;

use prost::Message;

/// `RuntimeService`'s and `ImageService`'s RPCs, as `berth_proto` lists them.
fn runtime_rpcs() -> &'static [&'static str] {
    &berth_proto::RPCS[..berth_proto::RUNTIME_RPC_COUNT]
}

fn image_rpcs() -> &'static [&'static str] {
    &berth_proto::RPCS[berth_proto::RUNTIME_RPC_COUNT..]
}

/// RPCs whose response is a server stream; every other RPC is unary both ways.
const SERVER_STREAMING: [&str; 7] = [
    "StreamPodSandboxes",
    "StreamContainers",
    "StreamContainerStats",
    "StreamPodSandboxStats",
    "GetContainerEvents",
    "StreamPodSandboxMetrics",
    "StreamImages",
];

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Reads the `rpc Name(` lines of one `service` block straight from the .proto text.
fn rpcs_in_source(source: &str, service: &str) -> Vec<String> {
    let header = format!("service {service} {{");
    let start = source
        .find(&header)
        .unwrap_or_else(|| panic!("service {service} not found in api.proto"));
    let body = &source[start + header.len()..];
    let mut rpcs = Vec::new();
    for line in body.lines() {
        let line = line.trim();
        if line == "}" {
            return rpcs;
        }
        if let Some(rest) = line.strip_prefix("rpc ") {
            let name = rest.split('(').next().unwrap_or_default().trim();
            rpcs.push(name.to_string());
        }
    }
    panic!("service {service} is not closed");
}

#[test]
fn proto_source_declares_exactly_the_41_cri_rpcs() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/proto/api.proto");
    let source = std::fs::read_to_string(path).expect("read api.proto");

    let runtime = rpcs_in_source(&source, "RuntimeService");
    let image = rpcs_in_source(&source, "ImageService");
    assert_eq!(runtime.len(), 35, "RuntimeService rpcs: {runtime:?}");
    assert_eq!(image.len(), 6, "ImageService rpcs: {image:?}");
    assert_eq!(
        runtime.iter().cloned().collect::<BTreeSet<_>>(),
        set(runtime_rpcs())
    );
    assert_eq!(
        image.iter().cloned().collect::<BTreeSet<_>>(),
        set(image_rpcs())
    );
    assert!(source.contains("package runtime.v1;"));
    assert!(source.contains("syntax = \"proto3\";"));
}

#[test]
fn compiled_descriptor_matches_rpc_names_types_and_streaming() {
    let fds = prost_types::FileDescriptorSet::decode(berth_proto::FILE_DESCRIPTOR_SET)
        .expect("decode descriptor set");
    let file = fds
        .file
        .iter()
        .find(|f| f.package() == "runtime.v1")
        .expect("runtime.v1 file");
    let mut total = 0;
    for service in &file.service {
        let expected = match service.name() {
            "RuntimeService" => set(runtime_rpcs()),
            "ImageService" => set(image_rpcs()),
            other => panic!("unexpected service {other}"),
        };
        let got: BTreeSet<String> = service
            .method
            .iter()
            .map(|m| m.name().to_string())
            .collect();
        assert_eq!(got, expected, "methods of {}", service.name());
        for m in &service.method {
            total += 1;
            let streaming = SERVER_STREAMING.contains(&m.name());
            assert_eq!(
                m.server_streaming(),
                streaming,
                "server streaming of {}",
                m.name()
            );
            assert!(
                !m.client_streaming(),
                "{} must not be client streaming",
                m.name()
            );
            // Upstream names every request <Rpc>Request and every response
            // <Rpc>Response, except the event stream.
            let (req, resp) = if m.name() == "GetContainerEvents" {
                (
                    "GetEventsRequest".to_string(),
                    "ContainerEventResponse".to_string(),
                )
            } else {
                (
                    format!("{}Request", m.name()),
                    format!("{}Response", m.name()),
                )
            };
            assert_eq!(
                m.input_type(),
                format!(".runtime.v1.{req}"),
                "request of {}",
                m.name()
            );
            assert_eq!(
                m.output_type(),
                format!(".runtime.v1.{resp}"),
                "response of {}",
                m.name()
            );
        }
    }
    assert_eq!(file.service.len(), 2);
    assert_eq!(total, 41);
}

#[test]
fn stream_requests_carry_the_same_filter_as_their_list_counterparts() {
    let fds = prost_types::FileDescriptorSet::decode(berth_proto::FILE_DESCRIPTOR_SET)
        .expect("decode descriptor set");
    let file = &fds.file[0];
    let message = |name: &str| {
        file.message_type
            .iter()
            .find(|m| m.name() == name)
            .unwrap_or_else(|| panic!("message {name} missing"))
    };
    for (stream_req, list_req) in [
        ("StreamPodSandboxesRequest", "ListPodSandboxRequest"),
        ("StreamContainersRequest", "ListContainersRequest"),
        ("StreamContainerStatsRequest", "ListContainerStatsRequest"),
        ("StreamPodSandboxStatsRequest", "ListPodSandboxStatsRequest"),
        (
            "StreamPodSandboxMetricsRequest",
            "ListPodSandboxMetricsRequest",
        ),
        ("StreamImagesRequest", "ListImagesRequest"),
    ] {
        assert_eq!(
            message(stream_req).field,
            message(list_req).field,
            "{stream_req} must mirror {list_req}"
        );
    }
    // Each stream response holds one repeated field 1 of the listed item type.
    for (resp, item) in [
        ("StreamPodSandboxesResponse", ".runtime.v1.PodSandbox"),
        ("StreamContainersResponse", ".runtime.v1.Container"),
        ("StreamContainerStatsResponse", ".runtime.v1.ContainerStats"),
        (
            "StreamPodSandboxStatsResponse",
            ".runtime.v1.PodSandboxStats",
        ),
        (
            "StreamPodSandboxMetricsResponse",
            ".runtime.v1.PodSandboxMetrics",
        ),
        ("StreamImagesResponse", ".runtime.v1.Image"),
    ] {
        let fields = &message(resp).field;
        assert_eq!(fields.len(), 1, "{resp} fields");
        assert_eq!(fields[0].number(), 1, "{resp} field number");
        assert_eq!(fields[0].type_name(), item, "{resp} item type");
        assert_eq!(
            fields[0].label(),
            prost_types::field_descriptor_proto::Label::Repeated,
            "{resp} must be repeated"
        );
    }
}

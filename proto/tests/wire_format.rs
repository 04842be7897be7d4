//! Wire compatibility with k8s.io/cri-api: messages encoded by prost must equal
//! bytes assembled by hand from upstream's field numbers and types, and such
//! bytes must decode into the right fields. A wrong number, type or label fails.

use berth_proto::v1;
use prost::Message;

/// Protobuf base-128 varint, written out here so the expectations do not come
/// from the encoder under test.
fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

fn tag(field: u64, wire_type: u64) -> Vec<u8> {
    varint((field << 3) | wire_type)
}

/// Field with a varint value (int32/int64/uint32/uint64/bool/enum).
fn vint(field: u64, value: u64) -> Vec<u8> {
    [tag(field, 0), varint(value)].concat()
}

/// Length-delimited field (string, bytes, sub-message, packed repeated).
fn len(field: u64, payload: &[u8]) -> Vec<u8> {
    [
        tag(field, 2),
        varint(payload.len() as u64),
        payload.to_vec(),
    ]
    .concat()
}

/// Map entry: key = 1, value = 2, both strings.
fn map_entry(field: u64, key: &str, value: &str) -> Vec<u8> {
    len(
        field,
        &[len(1, key.as_bytes()), len(2, value.as_bytes())].concat(),
    )
}

#[test]
fn version_response_uses_fields_1_to_4() {
    let msg = v1::VersionResponse {
        version: "0.1.0".into(),
        runtime_name: "berth".into(),
        runtime_version: "1.2.3".into(),
        runtime_api_version: "v1".into(),
    };
    let want = [
        len(1, b"0.1.0"),
        len(2, b"berth"),
        len(3, b"1.2.3"),
        len(4, b"v1"),
    ]
    .concat();
    assert_eq!(msg.encode_to_vec(), want);
    assert_eq!(v1::VersionResponse::decode(&want[..]).unwrap(), msg);
}

#[test]
fn pod_sandbox_metadata_name_uid_namespace_attempt() {
    let msg = v1::PodSandboxMetadata {
        name: "web".into(),
        uid: "0b5e".into(),
        namespace: "default".into(),
        attempt: 3,
    };
    let want = [
        len(1, b"web"),
        len(2, b"0b5e"),
        len(3, b"default"),
        vint(4, 3),
    ]
    .concat();
    assert_eq!(msg.encode_to_vec(), want);
}

#[test]
fn container_config_image_cdi_devices_and_stop_signal() {
    let msg = v1::ContainerConfig {
        metadata: Some(v1::ContainerMetadata {
            name: "app".into(),
            attempt: 1,
        }),
        image: Some(v1::ImageSpec {
            image: "docker.io/library/busybox:latest".into(),
            ..Default::default()
        }),
        log_path: "app/1.log".into(),
        tty: true,
        cdi_devices: vec![v1::CdiDevice {
            name: "vendor.com/gpu=0".into(),
        }],
        stop_signal: v1::Signal::Sigquit as i32,
        ..Default::default()
    };
    let want = [
        len(1, &[len(1, b"app"), vint(2, 1)].concat()),
        len(2, &len(1, b"docker.io/library/busybox:latest")),
        len(11, b"app/1.log"),
        vint(14, 1),
        len(17, &len(1, b"vendor.com/gpu=0")),
        vint(18, 18), // SIGQUIT is 18 in the CRI Signal enum
    ]
    .concat();
    assert_eq!(msg.encode_to_vec(), want);
    // Field 17 and 18 need two-byte tags: make sure they were really used.
    assert_eq!(tag(17, 2), [0x8a, 0x01]);
    assert_eq!(tag(18, 0), [0x90, 0x01]);
}

#[test]
fn image_spec_high_field_numbers() {
    let msg = v1::ImageSpec {
        image: "sha256:abc".into(),
        annotations: [("k".to_string(), "v".to_string())].into(),
        user_specified_image: "busybox".into(),
        runtime_handler: "kata".into(),
        image_ref: "sha256:abc".into(),
    };
    let want = [
        len(1, b"sha256:abc"),
        map_entry(2, "k", "v"),
        len(18, b"busybox"),
        len(19, b"kata"),
        len(20, b"sha256:abc"),
    ]
    .concat();
    assert_eq!(msg.encode_to_vec(), want);
}

#[test]
fn linux_container_resources_limits_and_negative_oom_score() {
    let msg = v1::LinuxContainerResources {
        cpu_period: 100_000,
        cpu_quota: 50_000,
        cpu_shares: 512,
        memory_limit_in_bytes: 64 << 20,
        oom_score_adj: -997,
        cpuset_cpus: "0-1".into(),
        memory_swap_limit_in_bytes: 128 << 20,
        ..Default::default()
    };
    let want = [
        vint(1, 100_000),
        vint(2, 50_000),
        vint(3, 512),
        vint(4, 64 << 20),
        // int64 (not sint64): a negative value is a ten-byte two's complement varint.
        vint(5, (-997i64).cast_unsigned()),
        len(6, b"0-1"),
        vint(10, 128 << 20),
    ]
    .concat();
    assert_eq!(vint(5, (-997i64).cast_unsigned()).len(), 11);
    assert_eq!(msg.encode_to_vec(), want);
    assert_eq!(v1::LinuxContainerResources::decode(&want[..]).unwrap(), msg);
}

#[test]
fn container_status_exit_code_reason_and_times() {
    let bytes = [
        len(1, b"c1"),
        vint(3, 2), // CONTAINER_EXITED
        vint(4, 1_000),
        vint(5, 2_000),
        vint(6, 3_000),
        vint(7, 137),
        len(10, b"OOMKilled"),
        len(15, b"/var/log/pods/x/c1.log"),
        len(17, b"sha256:feed"),
        vint(19, 23), // SIGTERM
    ]
    .concat();
    let status = v1::ContainerStatus::decode(&bytes[..]).unwrap();
    assert_eq!(status.id, "c1");
    assert_eq!(status.state(), v1::ContainerState::ContainerExited);
    assert_eq!(
        (status.created_at, status.started_at, status.finished_at),
        (1_000, 2_000, 3_000)
    );
    assert_eq!(status.exit_code, 137);
    assert_eq!(status.reason, "OOMKilled");
    assert_eq!(status.log_path, "/var/log/pods/x/c1.log");
    assert_eq!(status.image_id, "sha256:feed");
    assert_eq!(status.stop_signal(), v1::Signal::Sigterm);
    assert_eq!(status.encode_to_vec(), bytes);
}

#[test]
fn sandbox_security_context_out_of_order_fields_and_packed_groups() {
    let msg = v1::LinuxSandboxSecurityContext {
        run_as_user: Some(v1::Int64Value { value: 1000 }),
        readonly_rootfs: true,
        supplemental_groups: vec![1, 300],
        privileged: true,
        run_as_group: Some(v1::Int64Value { value: 2000 }),
        supplemental_groups_policy: v1::SupplementalGroupsPolicy::Strict as i32,
        ..Default::default()
    };
    // prost writes fields in number order; upstream numbers are 3, 4, 5, 6, 8, 11.
    let want = [
        len(3, &vint(1, 1000)),
        vint(4, 1),
        len(5, &[varint(1), varint(300)].concat()),
        vint(6, 1),
        len(8, &vint(1, 2000)),
        vint(11, 1),
    ]
    .concat();
    assert_eq!(msg.encode_to_vec(), want);
}

#[test]
fn pod_sandbox_config_maps_and_nested_linux() {
    let msg = v1::PodSandboxConfig {
        hostname: "web-0".into(),
        log_directory: "/var/log/pods/ns_web-0_uid".into(),
        labels: [("app".to_string(), "web".to_string())].into(),
        annotations: [("a".to_string(), "b".to_string())].into(),
        linux: Some(v1::LinuxPodSandboxConfig {
            cgroup_parent: "/kubepods/pod1".into(),
            sysctls: [("net.ipv4.ip_forward".to_string(), "1".to_string())].into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let want = [
        len(2, b"web-0"),
        len(3, b"/var/log/pods/ns_web-0_uid"),
        map_entry(6, "app", "web"),
        map_entry(7, "a", "b"),
        len(
            8,
            &[
                len(1, b"/kubepods/pod1"),
                map_entry(3, "net.ipv4.ip_forward", "1"),
            ]
            .concat(),
        ),
    ]
    .concat();
    assert_eq!(msg.encode_to_vec(), want);
}

#[test]
fn exec_sync_response_bytes_and_exit_code() {
    let msg = v1::ExecSyncResponse {
        stdout: b"out\n".to_vec(),
        stderr: b"err\n".to_vec(),
        exit_code: 2,
    };
    let want = [len(1, b"out\n"), len(2, b"err\n"), vint(3, 2)].concat();
    assert_eq!(msg.encode_to_vec(), want);
}

#[test]
fn runtime_config_and_status_features() {
    let msg = v1::RuntimeConfigResponse {
        linux: Some(v1::LinuxRuntimeConfiguration {
            cgroup_driver: v1::CgroupDriver::Cgroupfs as i32,
        }),
    };
    assert_eq!(msg.encode_to_vec(), len(1, &vint(1, 1)));

    let status = v1::StatusResponse {
        status: Some(v1::RuntimeStatus {
            conditions: vec![v1::RuntimeCondition {
                r#type: "RuntimeReady".into(),
                status: true,
                ..Default::default()
            }],
        }),
        features: Some(v1::RuntimeFeatures {
            supplemental_groups_policy: true,
            user_namespaces_host_network: true,
        }),
        ..Default::default()
    };
    let want = [
        len(1, &len(1, &[len(1, b"RuntimeReady"), vint(2, 1)].concat())),
        len(4, &[vint(1, 1), vint(2, 1)].concat()),
    ]
    .concat();
    assert_eq!(status.encode_to_vec(), want);
}

#[test]
fn psi_and_memory_stats_numbers_and_double_encoding() {
    let msg = v1::MemoryUsage {
        timestamp: 5,
        working_set_bytes: Some(v1::UInt64Value { value: 4096 }),
        psi: Some(v1::PsiStats {
            full: None,
            some: Some(v1::PsiData {
                total: 9,
                avg10: 1.5,
                ..Default::default()
            }),
        }),
        ..Default::default()
    };
    let psi_data = [
        vint(1, 9),
        tag(2, 1), // double: fixed 64-bit little endian
        1.5f64.to_le_bytes().to_vec(),
    ]
    .concat();
    let want = [
        vint(1, 5),
        len(2, &vint(1, 4096)),
        len(8, &len(2, &psi_data)),
    ]
    .concat();
    assert_eq!(msg.encode_to_vec(), want);
}

#[test]
fn stream_responses_are_repeated_field_1() {
    let msg = v1::StreamContainersResponse {
        containers: vec![
            v1::Container {
                id: "a".into(),
                ..Default::default()
            },
            v1::Container {
                id: "b".into(),
                ..Default::default()
            },
        ],
    };
    let want = [len(1, &len(1, b"a")), len(1, &len(1, b"b"))].concat();
    assert_eq!(msg.encode_to_vec(), want);

    let images = v1::StreamImagesResponse::decode(&len(1, &len(1, b"sha256:1"))[..]).unwrap();
    assert_eq!(images.images.len(), 1);
    assert_eq!(images.images[0].id, "sha256:1");
}

#[test]
fn enum_values_match_upstream() {
    assert_eq!(v1::Signal::RuntimeDefault as i32, 0);
    assert_eq!(v1::Signal::Sigkill as i32, 13);
    assert_eq!(v1::Signal::Sigterm as i32, 23);
    assert_eq!(v1::Signal::Sigrtmax as i32, 65);
    assert_eq!(v1::NamespaceMode::Target as i32, 3);
    assert_eq!(v1::MountPropagation::PropagationBidirectional as i32, 2);
    assert_eq!(v1::PodSandboxState::SandboxNotready as i32, 1);
    assert_eq!(v1::ContainerState::ContainerUnknown as i32, 3);
    assert_eq!(v1::ContainerEventType::ContainerDeletedEvent as i32, 3);
    assert_eq!(v1::security_profile::ProfileType::Localhost as i32, 2);
    assert_eq!(v1::Protocol::Sctp as i32, 2);
    assert_eq!(v1::MetricType::Gauge as i32, 1);
}

#[test]
fn auth_config_debug_hides_secrets() {
    let auth = v1::AuthConfig {
        username: "bob".into(),
        password: "hunter2".into(),
        auth: "Ym9iOmh1bnRlcjI=".into(),
        server_address: "registry.local".into(),
        identity_token: String::new(),
        registry_token: "tok-secret".into(),
    };
    let shown = format!("{auth:?}");
    for secret in ["hunter2", "Ym9iOmh1bnRlcjI=", "tok-secret"] {
        assert!(!shown.contains(secret), "{secret} leaked in {shown}");
    }
    assert!(shown.contains("bob") && shown.contains("registry.local"));
    assert!(shown.contains("<redacted>"));
    // Wire layout is unaffected by the Debug override.
    let want = [
        len(1, b"bob"),
        len(2, b"hunter2"),
        len(3, b"Ym9iOmh1bnRlcjI="),
        len(4, b"registry.local"),
        len(6, b"tok-secret"),
    ]
    .concat();
    assert_eq!(auth.encode_to_vec(), want);
}

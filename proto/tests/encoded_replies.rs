//! The server's pre-encoded list replies (`berth_proto::encoded`) are byte for
//! byte what the generated messages encode, so every client decodes them as
//! the ordinary List*/Stream* responses.

use berth_proto::encoded::{Encoded, EncodedList};
use berth_proto::v1;
use prost::Message;

fn container(i: u32) -> v1::Container {
    let mut c = v1::Container {
        id: format!("{i:064x}"),
        pod_sandbox_id: format!("pod-{}", i / 3),
        metadata: Some(v1::ContainerMetadata {
            name: format!("c{i}"),
            attempt: i,
        }),
        image: Some(v1::ImageSpec {
            image: "busybox".into(),
            ..Default::default()
        }),
        image_ref: "docker.io/library/busybox@sha256:00".into(),
        state: i32::try_from(i % 4).unwrap(),
        created_at: i64::from(i) * 1_000_000_007,
        image_id: "sha256:00".into(),
        ..Default::default()
    };
    // One label only: with more, map order (HashMap) would differ per encode.
    c.labels.insert("app".into(), format!("a{i}"));
    c
}

fn pod(i: u32) -> v1::PodSandbox {
    let mut p = v1::PodSandbox {
        id: format!("{i:064x}"),
        metadata: Some(v1::PodSandboxMetadata {
            name: format!("p{i}"),
            uid: format!("uid-{i}"),
            namespace: "default".into(),
            attempt: 1,
        }),
        state: i32::try_from(i % 2).unwrap(),
        created_at: i64::from(i),
        runtime_handler: "runc".into(),
        ..Default::default()
    };
    p.annotations.insert("k".into(), "v".into());
    p
}

#[test]
fn container_lists_encode_exactly_as_the_generated_responses() {
    let all: Vec<_> = (0..200).map(container).collect();
    let parts: Vec<Encoded<v1::Container>> = all.iter().map(Encoded::new).collect();
    let list: EncodedList<v1::Container> = parts.clone().into();
    let bytes = list.encode_to_vec();
    assert_eq!(list.encoded_len(), bytes.len());
    let plain = v1::ListContainersResponse {
        containers: all.clone(),
    };
    assert_eq!(bytes, plain.encode_to_vec());
    assert_eq!(
        bytes,
        v1::StreamContainersResponse {
            containers: all.clone()
        }
        .encode_to_vec()
    );
    let back = v1::ListContainersResponse::decode(bytes.as_slice()).unwrap();
    assert_eq!(back.containers, all);
    // Sharing parts between replies (as the server does) changes nothing.
    let again: EncodedList<v1::Container> = parts[..2].to_vec().into();
    assert_eq!(
        v1::StreamContainersResponse::decode(again.encode_to_vec().as_slice())
            .unwrap()
            .containers,
        all[..2]
    );
}

#[test]
fn pod_lists_encode_exactly_as_the_generated_responses() {
    let all: Vec<_> = (0..50).map(pod).collect();
    let list = EncodedList::from_messages(&all);
    let bytes = list.encode_to_vec();
    assert_eq!(
        bytes,
        v1::ListPodSandboxResponse { items: all.clone() }.encode_to_vec()
    );
    assert_eq!(
        bytes,
        v1::StreamPodSandboxesResponse {
            pod_sandboxes: all.clone()
        }
        .encode_to_vec()
    );
    assert_eq!(
        v1::ListPodSandboxResponse::decode(bytes.as_slice())
            .unwrap()
            .items,
        all
    );
}

#[test]
fn an_empty_list_is_an_empty_message() {
    let list = EncodedList::<v1::Container>::default();
    assert!(list.is_empty());
    assert_eq!(list.encoded_len(), 0);
    assert!(list.encode_to_vec().is_empty());
}

#[test]
fn decoding_keeps_each_item_and_skips_unknown_fields() {
    let all: Vec<_> = (0..3).map(container).collect();
    let mut bytes = v1::ListContainersResponse {
        containers: all.clone(),
    }
    .encode_to_vec();
    // Field 2, varint 7: a field a newer CRI might add.
    bytes.extend_from_slice(&[0x10, 0x07]);
    let list = EncodedList::<v1::Container>::decode(bytes.as_slice()).unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list.decode_items().unwrap(), all);
    let items: Vec<_> = list.items().map(|e| e.decode().unwrap()).collect();
    assert_eq!(items, all);
    assert_eq!(
        list.items().next().unwrap().as_bytes(),
        all[0].encode_to_vec()
    );
    // A wrong wire type for field 1 is an error, not a panic.
    EncodedList::<v1::Container>::decode(&[0x08, 0x01][..]).unwrap_err();
}

#[test]
fn an_encoded_message_decodes_back_and_compares_by_bytes() {
    let c = container(7);
    let e = Encoded::new(&c);
    assert_eq!(e.decode().unwrap(), c);
    assert_eq!(e.clone(), e);
    assert_ne!(Encoded::new(&container(8)), e);
    assert!(format!("{e:?}").starts_with("Encoded<Container>("), "{e:?}");
}

//! Compiles `proto/api.proto` into tonic clients/servers and prost messages.
//! protoc comes from `protoc-bin-vendored`, so no system protoc is needed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/api.proto";
    println!("cargo:rerun-if-changed={proto}");
    println!("cargo:rerun-if-changed=build.rs");

    // prost-build reads PROTOC from the environment of this build script only.
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // The build script is single-threaded here, so changing its environment is fine.
    std::env::set_var("PROTOC", protoc);

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        // The descriptor set is exported for gRPC reflection and for tests.
        .file_descriptor_set_path(out_dir.join("runtime_v1_descriptor.bin"))
        // AuthConfig carries registry secrets: lib.rs gives it a redacting Debug.
        .skip_debug(["runtime.v1.AuthConfig"])
        .compile_protos(&[proto], &["proto"])?;

    // The servers, compiled apart: every message is the one generated above
    // except the four list replies, which the server sends from pre-encoded
    // items (src/encoded.rs). prost-build picks the longest matching extern path.
    let server_dir = out_dir.join("server");
    std::fs::create_dir_all(&server_dir)?;
    let mut server = tonic_prost_build::configure()
        .build_server(true)
        .build_client(false)
        .out_dir(&server_dir)
        .extern_path(".runtime.v1", "crate::runtime::v1");
    for (message, reply) in [
        ("ListContainersResponse", "ListContainersReply"),
        ("StreamContainersResponse", "StreamContainersReply"),
        ("ListPodSandboxResponse", "ListPodSandboxReply"),
        ("StreamPodSandboxesResponse", "StreamPodSandboxesReply"),
    ] {
        server = server.extern_path(
            format!(".runtime.v1.{message}"),
            format!("crate::encoded::{reply}"),
        );
    }
    server.compile_protos(&[proto], &["proto"])?;

    // serde impls with the protobuf JSON mapping (camelCase out, both spellings
    // in, int64 as strings, enums by name): what crictl prints with `-o json`
    // and accepts in its runp/create config files.
    let descriptors = std::fs::read(out_dir.join("runtime_v1_descriptor.bin"))?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        .build(&[".runtime.v1"])?;
    Ok(())
}

//! Images from other producers, pulled from the local registry and run:
//! layers written by Python's `tarfile` with `./`, absolute and root (`/`,
//! `./`) member names and a stream that stops right after its last member's
//! data; and an image built by Debian's `umoci` (`umoci insert … /`, whose
//! layers start with a `/` member and lack the end-of-archive blocks),
//! copied into the registry with `skopeo`, run through gRPC and through the
//! `berth` CLI.

use std::path::Path;
use std::process::Command;

use berth_integration::berth_cli::BerthCli;
use berth_integration::env::{container_config, TestEnv};
use berth_integration::image_builder::{Compression, Image, ImageConfig, Layer, Platform};
use berth_integration::test_images::BUSYBOX;
use berth_integration::{skip, skip_if};
use berth_proto::v1::{ExecSyncRequest, ListPodSandboxRequest};

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e} (install it with scripts/install-deps.sh)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn start_env() -> TestEnv {
    TestEnv::start_for_pods_unpulled().await.unwrap()
}

/// Runs `image` in a fresh pod through gRPC and returns the output of
/// `sh -c script` exec'd in it.
async fn exec_in(env: &mut TestEnv, pod_name: &str, image: &str, script: &str) -> String {
    pull(env, image).await;
    let pod_config = env.pod_config(pod_name);
    let pod = env.run_pod(&pod_config).await.unwrap();
    let c = env
        .run_container(
            &pod,
            &pod_config,
            container_config(pod_name, image, &["sleep", "3600"]),
        )
        .await
        .unwrap();
    let r = env
        .cri
        .runtime
        .exec_sync(ExecSyncRequest {
            container_id: c,
            cmd: vec!["sh".into(), "-c".into(), script.into()],
            timeout: 30,
        })
        .await
        .unwrap()
        .into_inner();
    env.remove_pod(&pod).await.unwrap();
    assert_eq!(
        r.exit_code,
        0,
        "{script}: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    String::from_utf8(r.stdout).unwrap()
}

async fn pull(env: &mut TestEnv, image: &str) {
    use berth_proto::v1::{ImageSpec, PullImageRequest};
    env.cri
        .image
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            auth: None,
            sandbox_config: None,
        })
        .await
        .unwrap_or_else(|e| panic!("pull {image}: {e}"));
}

#[tokio::test]
async fn python_tarfile_layers_with_dot_absolute_and_root_names_run() {
    skip_if!(skip::no_pod_env());
    let mut env = start_env().await;
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/tarfile_layers.py");
    run(Command::new("python3")
        .arg(&script)
        .arg(BUSYBOX)
        .arg(dir.path()));
    let layers: Vec<Layer> = ["layer1.tar", "layer2.tar"]
        .iter()
        .map(|f| {
            let tar = std::fs::read(dir.path().join(f)).unwrap();
            Layer::from_tar(&tar, Compression::Gzip).unwrap()
        })
        .collect();
    let layer2 = std::fs::read(dir.path().join("layer2.tar")).unwrap();
    assert_ne!(layer2.len() % 512, 0, "layer two must end inside a block");
    let image = Image::build(
        "tarfile",
        layers,
        &ImageConfig {
            env: vec!["PATH=/bin".into()],
            ..Default::default()
        },
        Platform::host(),
    )
    .unwrap();
    let client = env.registry.client().unwrap();
    client
        .push_image("tarfile", "latest", &image)
        .await
        .unwrap();
    let reference = env.image("tarfile");
    let out = exec_in(
        &mut env,
        "tarfile",
        &reference,
        "cat /etc/motd; test -e /etc/gone || echo gone; readlink /bin/echo; \
         cat /etc/motd | /bin/cat; /bin/test -d /tmp && echo tmp",
    )
    .await;
    assert_eq!(
        out, "absolute names\ngone\nbusybox\nabsolute names\ntmp\n",
        "layer two's absolute names and whiteout apply over layer one"
    );
}

#[tokio::test]
async fn umoci_image_runs_through_grpc_and_the_cli() {
    skip_if!(skip::no_pod_env());
    let mut env = start_env().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rootfs = d.join("rootfs");
    for sub in ["bin", "etc", "tmp"] {
        std::fs::create_dir_all(rootfs.join(sub)).unwrap();
    }
    std::fs::copy(BUSYBOX, rootfs.join("bin/busybox")).unwrap();
    for applet in ["sh", "cat", "sleep", "echo"] {
        std::fs::hard_link(rootfs.join("bin/busybox"), rootfs.join("bin").join(applet)).unwrap();
    }
    std::fs::write(rootfs.join("etc/motd"), "built by umoci\n").unwrap();
    let layout = d.join("oci");
    let image_arg = format!("{}:bb", layout.display());
    run(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout));
    run(Command::new("umoci").args(["new", "--image", &image_arg]));
    run(Command::new("umoci")
        .args(["insert", "--image", &image_arg])
        .arg(&rootfs)
        .arg("/"));
    run(Command::new("umoci").args(["config", "--image", &image_arg, "--config.env", "PATH=/bin"]));
    // skopeo needs a signature policy; this one accepts the local image.
    let policy = d.join("policy.json");
    std::fs::write(
        &policy,
        r#"{"default": [{"type": "insecureAcceptAnything"}]}"#,
    )
    .unwrap();
    let reference = env.image("umoci");
    run(Command::new("skopeo")
        .arg("--policy")
        .arg(&policy)
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{image_arg}"))
        .arg(format!("docker://{reference}")));

    let out = exec_in(&mut env, "umoci-grpc", &reference, "cat /etc/motd").await;
    assert_eq!(out, "built by umoci\n");

    // The same image through the berth CLI, as an operator would.
    let berth = BerthCli::for_env(&env);
    berth.ok(&["rmi", &reference]);
    berth.ok(&["pull", &reference]);
    let logs = d.join("logs");
    std::fs::create_dir(&logs).unwrap();
    let pod = d.join("pod.json");
    std::fs::write(
        &pod,
        format!(
            r#"{{"metadata": {{"name": "umoci-cli", "namespace": "default", "uid": "uid-umoci-cli"}}, "log_directory": "{}"}}"#,
            logs.display()
        ),
    )
    .unwrap();
    let ctr = d.join("ctr.yaml");
    std::fs::write(
        &ctr,
        format!(
            "metadata:\n  name: umoci\nimage:\n  image: {reference}\ncommand: [sleep, \"3600\"]\nlog_path: umoci.log\n"
        ),
    )
    .unwrap();
    let cid = berth.id(&["run", ctr.to_str().unwrap(), pod.to_str().unwrap()]);
    assert_eq!(
        berth.ok(&["exec", "-s", &cid, "cat", "/etc/motd"]),
        "built by umoci\n"
    );
    berth.ok(&["rmp", "-f", "-a"]);
    let pods = env
        .cri
        .runtime
        .list_pod_sandbox(ListPodSandboxRequest { filter: None })
        .await
        .unwrap()
        .into_inner();
    assert!(pods.items.is_empty(), "{:?}", pods.items);
}

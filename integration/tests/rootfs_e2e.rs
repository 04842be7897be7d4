//! The container's filesystem view through gRPC, as a kubelet asks for it:
//! hostile image symlinks meet berthd's read of /etc/passwd and a volume
//! target, and hostPath volumes with each mount propagation and with
//! recursive read-only.

use std::path::Path;
use std::time::Duration;

use berth_integration::calls::{self, teardown_pod, wait_exited};
use berth_integration::env::{self, TestEnv, TAG};
use berth_integration::image_builder::{
    Compression, Image, ImageConfig, Layer, LayerBuilder, Platform,
};
use berth_integration::shared_dir::SharedDir;
use berth_integration::{skip, skip_if, test_images, wait};
use berth_proto::v1::*;

/// An image holding only `<name> -> <name>1 -> ... -> <name>40 -> target`:
/// 41 links, one more than the kernel follows.
fn link_chain_image(repo: &str, name: &str, target: &Path) -> Image {
    link_chain_image_on(repo, vec![], name, target)
}

/// The same chain as a layer on top of `base`.
fn link_chain_image_on(repo: &str, mut base: Vec<Layer>, name: &str, target: &Path) -> Image {
    let mut b = LayerBuilder::new();
    b.symlink(name, &format!("{name}1")).unwrap();
    for i in 1..=40 {
        let to = if i == 40 {
            target.display().to_string()
        } else {
            format!("{name}{}", i + 1)
        };
        b.symlink(&format!("{name}{i}"), &to).unwrap();
    }
    base.push(b.finish(Compression::Gzip).unwrap());
    let config = ImageConfig {
        cmd: Some(vec!["sh".into()]),
        env: vec!["PATH=/bin".into()],
        ..Default::default()
    };
    Image::build(repo, base, &config, Platform::host()).unwrap()
}

async fn push_and_pull(env: &mut TestEnv, repo: &str, image: &Image) -> String {
    env.registry
        .client()
        .unwrap()
        .push_image(repo, TAG, image)
        .await
        .unwrap();
    env.pull(repo).await.unwrap()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn image_symlink_chains_past_the_limit_fail_closed() {
    skip_if!(skip::no_pod_env());
    let mut env = TestEnv::start_for_pods().await.unwrap();
    // A host directory the chains end in: a passwd naming user `app`, and
    // room for what a volume target would have created through the link.
    let host = tempfile::tempdir().unwrap();
    let outside = host.path().join("outside");
    std::fs::create_dir_all(outside.join("etc")).unwrap();
    std::fs::write(
        outside.join("etc/passwd"),
        "root:x:0:0::/:/bin/sh\napp:x:4242:4242::/:/bin/sh\n",
    )
    .unwrap();
    let etc_image = push_and_pull(
        &mut env,
        "etcloop",
        &link_chain_image("etcloop", "etc", &outside.join("etc")),
    )
    .await;
    let vol_image = push_and_pull(
        &mut env,
        "volloop",
        &link_chain_image("volloop", "v", &outside),
    )
    .await;
    let pod_config = env.pod_config("loops");
    let pod = env.run_pod(&pod_config).await.unwrap();

    // berthd's user lookup reads the image's /etc/passwd.
    let mut config = env::container_config("user", &etc_image, &["sh"]);
    config.linux = Some(LinuxContainerConfig {
        security_context: Some(LinuxContainerSecurityContext {
            run_as_username: "app".into(),
            ..Default::default()
        }),
        ..Default::default()
    });
    let e = env
        .create_container(&pod, &pod_config, config)
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("/etc/passwd"), "{e:?}");

    // A volume whose target is behind the chain.
    let vol = host.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    let mut config = env::container_config("vol", &vol_image, &["sh"]);
    config.mounts = vec![Mount {
        container_path: "/v/sub".into(),
        host_path: vol.display().to_string(),
        ..Default::default()
    }];
    let e = env
        .create_container(&pod, &pod_config, config)
        .await
        .unwrap_err();
    assert!(
        e.message().contains("os error 40") && e.message().contains("/v/sub"),
        "{e:?}"
    );
    assert_eq!(entries(&outside), vec!["etc"]);
    assert_eq!(entries(&outside.join("etc")), vec!["passwd"]);

    // A working directory behind the chain (busybox underneath, so that
    // the process itself would be found).
    let wd_image = push_and_pull(
        &mut env,
        "wdloop",
        &link_chain_image_on(
            "wdloop",
            vec![test_images::busybox_layer().unwrap()],
            "w",
            &outside,
        ),
    )
    .await;
    let mut config = env::container_config("wd", &wd_image, &["sh", "-c", "pwd"]);
    config.working_dir = "/w".into();
    let e = env
        .create_container(&pod, &pod_config, config)
        .await
        .unwrap_err();
    assert!(
        e.message().contains("process.cwd") && e.message().contains("os error 40"),
        "{e:?}"
    );
    // A failed create leaves no container behind.
    assert!(calls::list_containers(&mut env.cri, None).await.is_empty());
    teardown_pod(&mut env.cri, &pod).await;
}

#[tokio::test]
async fn host_path_mounts_propagate_as_asked() {
    skip_if!(skip::no_pod_env());
    let mut env = TestEnv::start_for_pods().await.unwrap();
    let dirs = [
        ("bidir", MountPropagation::PropagationBidirectional, false),
        // As a kubelet sends a hostPath volume: read-only, host-to-container.
        ("h2c", MountPropagation::PropagationHostToContainer, true),
        ("priv", MountPropagation::PropagationPrivate, false),
    ];
    let shared: Vec<SharedDir> = dirs.iter().map(|_| SharedDir::new()).collect();
    let go = tempfile::tempdir().unwrap();
    let mut mounts: Vec<Mount> = dirs
        .iter()
        .zip(&shared)
        .map(|((name, prop, ro), dir)| Mount {
            container_path: format!("/{name}"),
            host_path: dir.path.display().to_string(),
            readonly: *ro,
            propagation: *prop as i32,
            ..Default::default()
        })
        .collect();
    mounts.push(Mount {
        container_path: "/go".into(),
        host_path: go.path().display().to_string(),
        ..Default::default()
    });

    let mut pod_config = env.pod_config("propagation");
    pod_config.linux = Some(LinuxPodSandboxConfig {
        security_context: Some(LinuxSandboxSecurityContext {
            privileged: true,
            ..Default::default()
        }),
        ..Default::default()
    });
    let pod = env.run_pod(&pod_config).await.unwrap();
    // Each mount gets a tmpfs from inside; then, once the host has mounted
    // one under each, the container reports which it sees.
    let script = "for d in bidir h2c priv; do mount -t tmpfs tmpfs /$d/inner || exit 1; done; \
                  echo mounted; \
                  while [ ! -e /go/go ]; do sleep 0.05; done; \
                  for d in bidir h2c priv; do \
                  [ -e /$d/fromhost/marker ] && echo $d=saw-host || echo $d=no-host; done";
    let mut config = env::container_config("c", &env.image("busybox"), &["sh", "-c", script]);
    config.mounts = mounts;
    config.linux = Some(LinuxContainerConfig {
        security_context: Some(LinuxContainerSecurityContext {
            privileged: true,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = env.run_container(&pod, &pod_config, config).await.unwrap();
    let log = Path::new(&pod_config.log_directory).join("c.log");
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    wait::until(
        "\"mounted\" in the log",
        Duration::from_secs(60),
        async || {
            let log = read_log();
            if log.contains("mounted") {
                return Ok(());
            }
            let s = calls::container_status(&mut env.cri, &id).await;
            assert!(
                s.state != ContainerState::ContainerExited as i32,
                "container exited: {log}"
            );
            Err(log)
        },
    )
    .await;
    let host_saw: Vec<bool> = shared.iter().map(|d| d.is_mount_point("inner")).collect();
    for d in &shared {
        nix::mount::mount(
            Some("tmpfs"),
            &d.path.join("fromhost"),
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        std::fs::write(d.path.join("fromhost/marker"), "host\n").unwrap();
    }
    std::fs::write(go.path().join("go"), "").unwrap();
    let st = wait_exited(&mut env.cri, &id, Duration::from_secs(60)).await;
    assert_eq!(st.exit_code, 0, "{}", read_log());
    let lines: Vec<String> = read_log()
        .lines()
        .filter_map(|l| l.splitn(4, ' ').nth(3).map(str::to_string))
        .collect();
    assert_eq!(
        lines,
        vec!["mounted", "bidir=saw-host", "h2c=saw-host", "priv=no-host"],
        "{}",
        read_log()
    );
    // Container to host: only the bidirectional mount.
    assert_eq!(host_saw, vec![true, false, false]);

    // Bidirectional on a private host mount could never reach the host:
    // refused, naming the mount, as containerd does.
    let private = SharedDir::with(nix::mount::MsFlags::MS_PRIVATE);
    let mut config = env::container_config("p", &env.image("busybox"), &["true"]);
    config.mounts = vec![
        Mount {
            container_path: "/ok".into(),
            host_path: shared[0].path.display().to_string(),
            propagation: MountPropagation::PropagationBidirectional as i32,
            ..Default::default()
        },
        Mount {
            container_path: "/p".into(),
            host_path: private.path.join("inner").display().to_string(),
            propagation: MountPropagation::PropagationBidirectional as i32,
            ..Default::default()
        },
    ];
    let e = env
        .create_container(&pod, &pod_config, config)
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message().contains("mounts[1].propagation")
            && e.message().contains(&private.path.display().to_string()),
        "{e:?}"
    );
    teardown_pod(&mut env.cri, &pod).await;
}

/// A kubelet's `recursiveReadOnly: Enabled` hostPath volume: the mount and
/// every mount below it are read-only in the container, where a plain
/// read-only bind leaves the submounts writable; a request the CRI forbids
/// (not read-only) is refused naming the field. Status advertises it, which
/// is what makes a kubelet send it.
#[tokio::test]
async fn recursive_read_only_mounts_are_read_only_all_the_way_down() {
    skip_if!(skip::no_pod_env());
    let mut env = TestEnv::start_for_pods().await.unwrap();
    let st = env
        .cri
        .runtime
        .status(StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    let features = st.runtime_handlers[0].features.unwrap();
    assert!(features.recursive_read_only_mounts);

    // A host dir with a writable tmpfs mounted inside it ("inner").
    let host = SharedDir::with(nix::mount::MsFlags::MS_PRIVATE);
    nix::mount::mount(
        Some("tmpfs"),
        &host.path.join("inner"),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    let vol = |path: &str, recursive| Mount {
        container_path: path.into(),
        host_path: host.path.display().to_string(),
        readonly: true,
        recursive_read_only: recursive,
        ..Default::default()
    };
    let pod_config = env.pod_config("rro");
    let pod = env.run_pod(&pod_config).await.unwrap();
    let script = "for d in /ro /rro; do \
                  touch $d/top 2>/dev/null && echo $d/top=rw || echo $d/top=ro; \
                  touch $d/inner/f 2>/dev/null && echo $d/inner=rw || echo $d/inner=ro; done";
    let mut config = env::container_config("c", &env.image("busybox"), &["sh", "-c", script]);
    config.mounts = vec![vol("/ro", false), vol("/rro", true)];
    let id = env.run_container(&pod, &pod_config, config).await.unwrap();
    let st = wait_exited(&mut env.cri, &id, Duration::from_secs(60)).await;
    let log = std::fs::read_to_string(Path::new(&pod_config.log_directory).join("c.log"))
        .unwrap_or_default();
    assert_eq!(st.exit_code, 0, "{log}");
    let lines: Vec<&str> = log
        .lines()
        .filter_map(|l| l.splitn(4, ' ').nth(3))
        .collect();
    assert_eq!(
        lines,
        vec!["/ro/top=ro", "/ro/inner=rw", "/rro/top=ro", "/rro/inner=ro"],
        "{log}"
    );

    let mut config = env::container_config("bad", &env.image("busybox"), &["true"]);
    config.mounts = vec![Mount {
        readonly: false,
        ..vol("/rro", true)
    }];
    let e = env
        .create_container(&pod, &pod_config, config)
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().contains("mounts[0].recursive_read_only"),
        "{e:?}"
    );
    teardown_pod(&mut env.cri, &pod).await;
    let _ = std::fs::remove_file(host.path.join("inner/f"));
}

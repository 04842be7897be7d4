//! The containerd harness: the peer the benchmarks compare against must pull from
//! the test registry through the hosts.toml the harness writes (the same layout
//! berthd reads), run a pod, and leave nothing behind when dropped.

use berth_integration::client::Cri;
use berth_integration::containerd::Containerd;
use berth_integration::env::{TestEnv, TestEnvOptions};
use berth_integration::{bench, skip, skip_if, test_images};
use berth_proto::v1 as cri;

async fn pull(c: &mut Cri, image: &str) -> String {
    c.image
        .pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .image_ref
}

#[tokio::test]
async fn containerd_pulls_test_images_and_runs_a_pod() {
    skip_if!(skip::first(&[
        skip::no_registry(),
        skip::no_busybox(),
        Containerd::unavailable_reason()
    ]));
    let mut env = TestEnv::start_with(TestEnvOptions {
        containerd: true,
        ..Default::default()
    })
    .await
    .unwrap();
    // The hosts.toml containerd pulls through (rewritten as it was).
    let hosts = env.registry.write_hosts_toml(env.certs_d()).unwrap();
    assert!(std::fs::read_to_string(&hosts).unwrap().contains("[host."));

    let containerd = env.containerd.take().unwrap();
    let mut c = containerd.client().await.unwrap();
    let image_ref = pull(&mut c, &env.image("busybox")).await;
    // containerd reports the config digest as the image id.
    assert_eq!(image_ref, test_images::busybox().unwrap().id());

    let work = tempfile::tempdir().unwrap();
    let ops = bench::pod_lifecycle(&mut c, &env.image("busybox"), work.path(), 1, false).await;
    for (op, o) in bench::POD_OPS.iter().zip(&ops) {
        assert!(
            matches!(o, bench::Outcome::Samples(s) if s.len() == 1),
            "{op}: {o:?}"
        );
    }

    let dir = containerd.dir().to_path_buf();
    drop(containerd);
    assert!(!dir.exists(), "{} left behind", dir.display());
    let needle = dir.to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&cmdline).contains(&needle),
            "process {:?} outlived containerd",
            entry.file_name()
        );
    }
}

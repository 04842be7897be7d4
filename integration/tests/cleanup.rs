//! The leftover cleanup that Berthd and Containerd run on drop: it must kill what
//! belongs to the instance's dir (monitors naming it, containers whose mount
//! namespace uses it), unmount what is mounted under it, and touch nothing else.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_integration::cleanup::kill_and_unmount_under;
use berth_integration::{skip, skip_if};

fn spawn(args: &[&str]) -> Child {
    Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

fn exited(child: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn mounted(path: &std::path::Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(path.to_str().unwrap()))
}

#[test]
fn cleanup_kills_owned_processes_and_unmounts_but_spares_bystanders() {
    skip_if!(skip::not_root());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("ctr")).unwrap();
    std::fs::create_dir(d.join("host")).unwrap();
    std::fs::write(d.join("log"), "").unwrap();

    // A "monitor": names the dir on its command line.
    let mut monitor = spawn(&[
        "/bin/busybox",
        "tail",
        "-f",
        d.join("log").to_str().unwrap(),
    ]);
    // A "container": its own mount namespace with a mount under the dir, and a
    // command line that does not mention it.
    let script = format!(
        "mount -t tmpfs tmpfs {} && exec /bin/busybox sleep 1000",
        d.join("ctr").display()
    );
    let mut container = spawn(&[
        "unshare",
        "-m",
        "--propagation",
        "private",
        "/bin/busybox",
        "sh",
        "-c",
        &script,
    ]);
    // A bystander in our mount namespace: it sees our mounts but is not ours.
    let mut bystander = spawn(&["/bin/busybox", "sleep", "1001"]);
    // A mount in our own namespace, as berthd makes for rootfs and ns pins.
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(d.join("host"))
        .status()
        .unwrap();
    assert!(status.success());
    assert!(mounted(&d.join("host")));
    // Let the container's mount happen before we look for it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let mi = std::fs::read_to_string(format!("/proc/{}/mountinfo", container.id()))
            .unwrap_or_default();
        if mi.contains(d.join("ctr").to_str().unwrap()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    kill_and_unmount_under(d);

    assert!(exited(&mut monitor), "monitor-like process survived");
    assert!(exited(&mut container), "container-like process survived");
    assert!(
        bystander.try_wait().unwrap().is_none(),
        "bystander was killed"
    );
    assert!(!mounted(&d.join("host")), "mount under the dir survived");
    bystander.kill().unwrap();
    bystander.wait().unwrap();
}

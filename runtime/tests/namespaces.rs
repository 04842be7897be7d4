//! Root tests for user and cgroup namespaces and the in-container cgroup mount.

mod common;

use common::*;
use serde_json::json;

#[test]
fn user_namespace_maps_root_to_an_unprivileged_host_uid() {
    if !can_run() {
        return;
    }
    let mut f = Fixture::new("userns");
    let ns = f.spec["linux"]["namespaces"].as_array_mut().unwrap();
    ns.push(json!({"type": "user"}));
    f.spec["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    f.spec["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    // Mounting cgroupfs needs host privileges; drop that mount.
    f.spec["mounts"].as_array_mut().unwrap().pop();
    f.args(
        "id -u; cat /proc/self/uid_map; ls /dev/null >/dev/null && echo dev-ok; exec sleep 1000",
    );
    let c = f.create();
    c.start().unwrap();
    wait_for("output", || f.log().contains("dev-ok"));
    let out = f.log_lines("stdout");
    assert_eq!(out[0], "0");
    let map: Vec<&str> = out[1].split_whitespace().collect();
    assert_eq!(map, ["0", "100000", "65536"]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", c.pid())).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line.split_whitespace().skip(1).all(|u| u == "100000"),
        "{uid_line}"
    );
    c.delete(true).unwrap();
}

#[test]
fn cgroup_namespace_hides_the_host_hierarchy() {
    if !can_run() {
        return;
    }
    let mut f = Fixture::new("cgroupns");
    f.spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "cgroup"}));
    f.args("grep memory /proc/self/cgroup; cat /sys/fs/cgroup/memory/memory.limit_in_bytes; touch /sys/fs/cgroup/memory/x 2>/dev/null || echo ro");
    f.spec["linux"]["resources"]["memory"] = json!({"limit": 100 << 20});
    let st = f.run();
    assert_eq!(st.exit.unwrap().code, 0, "{}", f.log());
    let out = f.log_lines("stdout");
    assert_eq!(out[0].rsplit(':').next().unwrap(), "/", "{out:?}");
    assert_eq!(out[1], (100u64 << 20).to_string());
    assert_eq!(out[2], "ro");
}

#[test]
fn cgroup_namespace_without_a_cgroup_mount_is_rooted_at_the_container() {
    // The init enters its cgroup namespace only once the monitor has put it in
    // its cgroup; without a cgroup mount in the spec that happens after the
    // rootfs is set up, and must happen all the same.
    if !can_run() {
        return;
    }
    let mut f = Fixture::new("cgroupns-nomount");
    f.spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "cgroup"}));
    f.spec["mounts"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["type"] != "cgroup");
    f.args("grep -E 'memory|pids' /proc/self/cgroup");
    let st = f.run();
    assert_eq!(st.exit.unwrap().code, 0, "{}", f.log());
    let out = f.log_lines("stdout");
    assert_eq!(out.len(), 2, "{out:?}");
    for line in out {
        assert_eq!(line.rsplit(':').next().unwrap(), "/", "{line:?}");
    }
}

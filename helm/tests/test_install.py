"""deploy/install.sh, the installer pod's entrypoint, run against a scratch
"host" directory with the real berthd, berth and berth-monitor binaries and the
chart's rendered ConfigMap. systemd cannot run here (it is not PID 1), so
fake_host.py stands in for `nsenter ... systemctl`: it records each call and
starts the berthd the installer put on the "host" from the unit's ExecStart.
"""

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from conftest import DEPLOY, TESTS, chart_files, require_binary

INSTALL = DEPLOY / "install.sh"
CONTAINERD = "unix:///var/run/containerd/containerd.sock"
BERTH = "unix:///run/berth/berth.sock"
FLAGS = f'KUBELET_KUBEADM_ARGS="--container-runtime-endpoint={CONTAINERD} --pod-infra-container-image=registry.k8s.io/pause:3.10"\n'
KUBELET_CONFIG = f"""apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: systemd
containerRuntimeEndpoint: {CONTAINERD}
imageServiceEndpoint: {CONTAINERD}
clusterDNS:
  - 10.96.0.10
"""


class Node:
    """A scratch host root plus the installer image's files."""

    def __init__(self, tmp: Path):
        self.root = tmp / "host"
        self.src = tmp / "image"
        self.chart = tmp / "chart"
        self.state = tmp / "fake-host"
        for d in (self.root / "run/systemd/system", self.src / "bin", self.chart, self.state):
            d.mkdir(parents=True)
        # Copies, not links: other builds may replace the originals mid-test.
        for b in ("berthd", "berth", "berth-monitor"):
            shutil.copy2(require_binary(b), self.src / "bin" / b)
        (self.src / "berthd.service").write_text((DEPLOY / "berthd.service").read_text())
        self.set_values({})

    def set_values(self, values):
        for p in sorted(self.chart.rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
        for rel, text in chart_files(values).items():
            f = self.chart / rel
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(text)

    def install(self, mode="none", **env):
        e = dict(os.environ)
        e.update(HOST_ROOT=str(self.root), BERTH_SRC=str(self.src), CHART_CONFIG=str(self.chart),
                 FAKE_HOST_DIR=str(self.state), HOST_EXEC=f"{sys.executable} {TESTS / 'fake_host.py'}",
                 ONESHOT="1", KUBELET_MODE=mode, KUBELET_SETTLE_SECS="0", READY_TIMEOUT="60")
        e.update(env)
        return subprocess.run(["bash", INSTALL], env=e, capture_output=True, text=True, timeout=120)

    def calls(self):
        f = self.state / "calls"
        return f.read_text().splitlines() if f.exists() else []

    def berthd_pid(self):
        return int((self.state / "berthd.pid").read_text())

    def host(self, path):
        return self.root / path.lstrip("/")

    def stop(self):
        subprocess.run([sys.executable, TESTS / "fake_host.py", "systemctl", "stop", "berthd.service"],
                       env={**os.environ, "HOST_ROOT": str(self.root), "FAKE_HOST_DIR": str(self.state)})


@pytest.fixture
def node(tmp_path):
    for b in ("berthd", "berth", "berth-monitor"):
        require_binary(b)
    n = Node(tmp_path)
    yield n
    n.stop()
    # Each node holds two copies of the binaries (the image's and the host's):
    # drop them now rather than when pytest rotates its base directories.
    shutil.rmtree(tmp_path, ignore_errors=True)


def ok(res):
    assert res.returncode == 0, f"install.sh failed ({res.returncode}):\n{res.stderr}"
    return res


def test_install_starts_berthd_then_restarts_it_only_when_needed(node):
    ok(node.install(BIN_DIR="/opt/bin"))
    for b in ("berthd", "berth", "berth-monitor"):
        f = node.host(f"/opt/bin/{b}")
        assert f.read_bytes() == (node.src / "bin" / b).read_bytes() and os.access(f, os.X_OK)
    unit = node.host("/etc/systemd/system/berthd.service").read_text()
    assert "ExecStart=/opt/bin/berthd --config /etc/berth/config.toml" in unit
    assert node.host("/etc/berth/config.toml").read_text() == (node.chart / "config.toml").read_text()
    assert node.calls() == ["systemctl daemon-reload", "systemctl enable berthd.service",
                            "systemctl restart berthd.service"]
    first = node.berthd_pid()
    sock = f"unix://{node.host('/run/berth/berth.sock')}"
    subprocess.run([node.src / "bin" / "berth", "-r", sock, "version"], check=True, capture_output=True)

    # Nothing changed: berthd keeps running, systemd is not reloaded.
    before = len(node.calls())
    res = ok(node.install(BIN_DIR="/opt/bin"))
    assert node.calls()[before:] == ["systemctl enable berthd.service", "systemctl start berthd.service"]
    assert node.berthd_pid() == first
    assert "installed" not in res.stderr

    # A new config is installed and berthd restarted with it.
    node.set_values({"config": {"logLevel": "debug"}})
    before = len(node.calls())
    ok(node.install(BIN_DIR="/opt/bin"))
    assert node.calls()[before:] == ["systemctl enable berthd.service", "systemctl restart berthd.service"]
    assert node.berthd_pid() != first
    assert tomllib.loads(node.host("/etc/berth/config.toml").read_text())["log_level"] == "debug"


def test_a_config_berthd_rejects_is_not_installed(node):
    ok(node.install())
    good = node.host("/etc/berth/config.toml").read_text()
    pid = node.berthd_pid()
    (node.chart / "config.toml").write_text(good + 'lissten = "x"\n')
    res = node.install()
    assert res.returncode != 0 and "lissten" in res.stderr, res.stderr
    assert node.host("/etc/berth/config.toml").read_text() == good
    assert node.berthd_pid() == pid


def test_registry_hosts_are_synced_and_operator_files_kept(node, tmp_path):
    ca = (TESTS / "values-full.yaml").read_text()
    pem = yaml.safe_load(ca)["registry"]["hosts"]["registry.example.com:5443"]["ca"][0]
    node.set_values({"registry": {"hosts": {
        "docker.io": {"mirrors": [{"url": "https://mirror.example.internal", "ca": [pem]}]},
        "quay.io:443": {"server": "https://quay.io"},
    }}})
    certs = node.host("/etc/berth/certs.d")
    (certs / "ghcr.io").mkdir(parents=True)
    (certs / "ghcr.io" / "hosts.toml").write_text('server = "https://ghcr.io"\n')
    ok(node.install())
    hub = tomllib.loads((certs / "docker.io" / "hosts.toml").read_text())
    ca_path = hub["host"]["https://mirror.example.internal"]["ca"][0]
    assert ca_path == "/etc/berth/certs.d/docker.io/mirror0-ca0.crt"
    assert node.host(ca_path).read_text().strip() == pem.strip()
    assert tomllib.loads((certs / "quay.io:443" / "hosts.toml").read_text())["server"] == "https://quay.io"

    # Dropped from the values: the chart's directory and the stale CA go.
    node.set_values({"registry": {"hosts": {"docker.io": {"mirrors": [{"url": "https://m2.example.internal"}]}}}})
    ok(node.install())
    assert not (certs / "quay.io:443").exists()
    assert not node.host(ca_path).exists()
    assert list(tomllib.loads((certs / "docker.io" / "hosts.toml").read_text())["host"]) == ["https://m2.example.internal"]
    assert (certs / "ghcr.io" / "hosts.toml").exists(), "an operator's own registry dir must be left alone"


def kubelet_restarts(node):
    return node.calls().count("systemctl restart kubelet")


def test_switch_rewrites_kubeadm_flags_with_backup_and_restore_puts_them_back(node):
    flags = node.host("/var/lib/kubelet/kubeadm-flags.env")
    conf = node.host("/var/lib/kubelet/config.yaml")
    flags.parent.mkdir(parents=True)
    flags.write_text(FLAGS)
    conf.write_text(KUBELET_CONFIG)

    res = ok(node.install("switch"))
    assert flags.read_text() == FLAGS.replace(CONTAINERD, BERTH)
    assert "--pod-infra-container-image=registry.k8s.io/pause:3.10" in flags.read_text()
    assert (flags.parent / "kubeadm-flags.env.berth-backup").read_text() == FLAGS
    assert conf.read_text() == KUBELET_CONFIG, "flags win over the config file: leave it alone"
    assert kubelet_restarts(node) == 1
    assert "this copy exits" in res.stderr

    # Idempotent: the new pod on Berth finds the kubelet switched already.
    res = ok(node.install("switch"))
    assert "already uses" in res.stderr and kubelet_restarts(node) == 1
    assert (flags.parent / "kubeadm-flags.env.berth-backup").read_text() == FLAGS

    ok(node.install("restore"))
    assert flags.read_text() == FLAGS
    assert not (flags.parent / "kubeadm-flags.env.berth-backup").exists()
    assert kubelet_restarts(node) == 2
    ok(node.install("restore"))
    assert kubelet_restarts(node) == 2, "nothing to restore: the kubelet is not restarted"


def test_switch_edits_kubelet_configuration_when_no_flag_is_set(node):
    conf = node.host("/var/lib/kubelet/config.yaml")
    conf.parent.mkdir(parents=True)
    node.host("/var/lib/kubelet/kubeadm-flags.env").write_text('KUBELET_KUBEADM_ARGS="--node-ip=10.1.2.3"\n')
    conf.write_text(KUBELET_CONFIG)
    ok(node.install("switch"))
    cfg = yaml.safe_load(conf.read_text())
    assert cfg["containerRuntimeEndpoint"] == BERTH and cfg["imageServiceEndpoint"] == BERTH
    assert cfg["cgroupDriver"] == "systemd" and cfg["clusterDNS"] == ["10.96.0.10"]
    ok(node.install("restore"))
    assert conf.read_text() == KUBELET_CONFIG

    # A config without the key (the kubelet's own default) gets it added.
    bare = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration"  # no final newline
    conf.write_text(bare)
    ok(node.install("switch"))
    assert yaml.safe_load(conf.read_text())["containerRuntimeEndpoint"] == BERTH
    ok(node.install("restore"))
    assert conf.read_text() == bare


def test_kubelet_that_fails_on_berth_gets_its_old_endpoint_back(node):
    flags = node.host("/var/lib/kubelet/kubeadm-flags.env")
    flags.parent.mkdir(parents=True)
    flags.write_text(FLAGS)
    (node.state / "kubelet-active").write_text("no")
    res = node.install("switch")
    assert res.returncode != 0 and "restored the previous endpoint" in res.stderr
    assert flags.read_text() == FLAGS
    assert kubelet_restarts(node) == 2


def test_switch_without_kubelet_files_fails_clearly(node):
    res = node.install("switch")
    assert res.returncode != 0 and "switch the kubelet by hand" in res.stderr
    assert node.host("/usr/local/bin/berthd").exists(), "berth itself is installed all the same"


def test_unknown_mode_is_refused(node):
    res = node.install("sideways")
    assert res.returncode != 0 and "sideways" in res.stderr
    assert not node.host("/usr/local/bin/berthd").exists()


def test_a_node_without_systemd_is_refused_before_anything_is_copied(node):
    (node.root / "run/systemd/system").rmdir()
    res = node.install()
    assert res.returncode != 0 and "does not run systemd" in res.stderr
    assert not node.host("/usr/local/bin/berthd").exists() and node.calls() == []


def test_cni_config_presence_is_reported(node):
    res = ok(node.install())
    assert "no CNI network config in /etc/cni/net.d" in res.stderr
    conf = node.host("/etc/cni/net.d")
    conf.mkdir(parents=True)
    (conf / "10-bridge.conflist").write_text('{"cniVersion": "1.0.0", "name": "n", "plugins": []}')
    res = ok(node.install())
    assert "no CNI network config" not in res.stderr

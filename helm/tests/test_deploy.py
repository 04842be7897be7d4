"""deploy/: the default config file and the systemd unit, checked by berthd and
by systemd's own parser."""

import re
import shutil
import subprocess
import tomllib

import pytest

from conftest import DEPLOY, berthd_default_config, flat_keys, require_fresh_berthd

CONFIG = DEPLOY / "config.toml"
UNIT = DEPLOY / "berthd.service"


def test_every_key_in_the_default_config_exists_in_berthd():
    documented = flat_keys(tomllib.loads(CONFIG.read_text()))
    known = flat_keys(berthd_default_config())
    assert not documented - known, f"deploy/config.toml has keys berthd rejects: {sorted(documented - known)}"


def test_every_berthd_key_is_documented_in_the_default_config():
    documented = flat_keys(tomllib.loads(CONFIG.read_text()))
    known = flat_keys(berthd_default_config())
    assert not known - documented, f"add these keys to deploy/config.toml: {sorted(known - documented)}"


# Where the shipped file deliberately differs from berthd's defaults.
SHIPPED_CHANGES = {"metrics": {"address": "127.0.0.1:9898"}}  # on, on loopback


def test_default_config_values_are_berthd_defaults():
    # The file documents the defaults: loading it changes only SHIPPED_CHANGES.
    berthd = require_fresh_berthd()
    res = subprocess.run([berthd, "config", "dump", "--config", CONFIG], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    expected = berthd_default_config()
    for table, keys in SHIPPED_CHANGES.items():
        expected[table].update(keys)
    assert tomllib.loads(res.stdout) == expected


def verify_unit(tmp_path, text):
    unit = tmp_path / "berthd.service"
    # verify insists that ExecStart's binary exists: point it at a real one.
    berthd = shutil.which("true")
    unit.write_text(text.replace("/usr/local/bin/berthd", berthd))
    res = subprocess.run(["systemd-analyze", "verify", unit], capture_output=True, text=True)
    return res.returncode, res.stderr.strip()


@pytest.fixture
def systemd_analyze():
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")


def test_unit_passes_systemd_analyze_verify(systemd_analyze, tmp_path):
    rc, err = verify_unit(tmp_path, UNIT.read_text())
    assert rc == 0 and err == "", err


def test_systemd_analyze_reports_a_broken_unit(systemd_analyze, tmp_path):
    rc, err = verify_unit(tmp_path, UNIT.read_text().replace("KillMode=process", "KillMode=procss"))
    assert "procss" in err


def unit_settings():
    out = {}
    for line in UNIT.read_text().splitlines():
        m = re.match(r"^([A-Za-z]+)=(.*)$", line)
        if m:
            out.setdefault(m.group(1), []).append(m.group(2))
    return out


def test_unit_keeps_containers_across_restarts_and_runs_berthd_with_the_config():
    s = unit_settings()
    assert s["ExecStart"] == ["/usr/local/bin/berthd --config /etc/berth/config.toml"]
    # Only berthd is signalled on stop/restart: monitors (and containers) live on.
    assert s["KillMode"] == ["process"]
    assert s["Delegate"] == ["yes"]
    assert s["Type"] == ["simple"], "berthd does not send sd_notify READY=1 yet"
    assert s["Restart"] == ["always"]
    assert s["OOMScoreAdjust"] == ["-999"]
    assert int(s["LimitNOFILE"][0]) >= 1048576
    assert s["WantedBy"] == ["multi-user.target"]


def test_installer_script_passes_shellcheck():
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck is not installed (Debian package shellcheck)")
    res = subprocess.run(["shellcheck", "--severity=warning", DEPLOY / "install.sh"], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout


def test_image_layout_matches_the_installer_and_the_chart():
    """Docker cannot build here: check that the Dockerfile, the installer's
    defaults and the chart agree on where things are in the image."""
    docker = (DEPLOY / "Dockerfile").read_text()
    repo = DEPLOY.parent
    # The binaries the image carries are the workspace's.
    for b, src in [("berthd", "shim/src/bin/berthd.rs"), ("berth", "shim/src/bin/berth.rs"),
                   ("berth-monitor", "runtime/src/bin/berth-monitor.rs")]:
        assert f"target/release/{b}" in docker and (repo / src).is_file(), b
    assert "COPY --from=build /out/bin/ /opt/berth/bin/" in docker
    assert "COPY deploy/berthd.service /opt/berth/berthd.service" in docker
    assert "COPY deploy/install.sh /usr/local/bin/berth-install" in docker
    assert 'ENTRYPOINT ["/usr/local/bin/berth-install"]' in docker
    assert "util-linux" in docker, "nsenter"
    script = (DEPLOY / "install.sh").read_text()
    assert "BERTH_SRC=${BERTH_SRC:-/opt/berth}" in script
    assert "CHART_CONFIG=${CHART_CONFIG:-/etc/berth-chart}" in script
    ds = (repo / "helm/berth/templates/daemonset.yaml").read_text()
    assert "- /opt/berth/bin/berth\n" in ds and "mountPath: /etc/berth-chart" in ds
    ignored = (repo / ".dockerignore").read_text().split()
    assert {"target", "target-*", ".git"} <= set(ignored)

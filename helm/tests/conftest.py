"""Shared helpers for the chart and installer tests (python3 -m pytest helm/tests)."""

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "berth"
DEPLOY = REPO / "deploy"
TESTS = Path(__file__).resolve().parent


def find_binary(name):
    """A built Berth binary: $BERTH_BIN_DIR, the repo's target/, or $CARGO_TARGET_DIR."""
    dirs = []
    if os.environ.get("BERTH_BIN_DIR"):
        dirs.append(Path(os.environ["BERTH_BIN_DIR"]))
    dirs.append(REPO / "target" / "debug")
    if os.environ.get("CARGO_TARGET_DIR"):
        dirs.append(Path(os.environ["CARGO_TARGET_DIR"]) / "debug")
    for d in dirs:
        if (d / name).is_file() and os.access(d / name, os.X_OK):
            return d / name
    return None


def require_binary(name):
    path = find_binary(name)
    if path is None:
        pytest.skip(f"{name} is not built (cargo build --workspace --bins); set BERTH_BIN_DIR to point at it")
    return path


def require_fresh_berthd():
    """berthd, skipping when it is older than shim's sources: a stale binary
    would judge the config against keys the code no longer has (or not yet).
    A binary in $BERTH_BIN_DIR is used whatever its age."""
    berthd = require_binary("berthd")
    if os.environ.get("BERTH_BIN_DIR") and berthd.parent == Path(os.environ["BERTH_BIN_DIR"]):
        return berthd  # named explicitly: trusted as it is
    newest = max(p.stat().st_mtime for p in (REPO / "shim" / "src").rglob("*.rs"))
    if berthd.stat().st_mtime < newest:
        pytest.skip(f"{berthd} is older than shim/src; rebuild it (cargo build -p berth-shim --bins) "
                    "or name a current one with BERTH_BIN_DIR")
    return berthd


def berthd_default_config():
    berthd = require_fresh_berthd()
    out = subprocess.run([berthd, "config", "default"], check=True, capture_output=True, text=True)
    return tomllib.loads(out.stdout)


def flat_keys(table, prefix=""):
    """Dotted names of every leaf key of a parsed TOML document."""
    keys = set()
    for k, v in table.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            keys |= flat_keys(v, name + ".")
        else:
            keys.add(name)
    return keys


def chart_files(values):
    """The installer's /etc/berth-chart as the kubelet would project the
    chart's ConfigMap: relative path -> content."""
    import helm_python as helm

    with helm.Chart.load(str(CHART)) as c:
        out = c.render(values, name="berth", namespace="berth-system")
    docs = [d for p, t in out.items() if not p.endswith("NOTES.txt") for d in yaml.safe_load_all(t) if d]
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    ds = next(d for d in docs if d["kind"] == "DaemonSet")
    vol = next(v for v in ds["spec"]["template"]["spec"]["volumes"] if v["name"] == "chart-config")
    return {i["path"]: cm["data"][i["key"]] for i in vol["configMap"]["items"]}


def load_values(name):
    return yaml.safe_load((TESTS / name).read_text())


@pytest.fixture
def chart_copy(tmp_path):
    """A scratch copy of the chart that a test may break."""
    dst = tmp_path / "berth"
    shutil.copytree(CHART, dst)
    return dst

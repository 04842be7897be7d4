"""The chart's registry hosts files, read by a real consumer of the format.

containerd (Debian's package) resolves and fetches an image through a local
docker-registry on loopback using only the hosts.toml files the chart renders:
the image is named after a registry that does not exist (`.invalid`), so the
fetch succeeds only if the rendered mirror or server entry is understood.
"""

import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tarfile
import time
import urllib.request

import pytest

from conftest import chart_files

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("containerd", "ctr", "docker-registry")),
    reason="needs Debian's containerd and docker-registry packages",
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, what, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(what)


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def push_image(base, repo, tag, context=None):
    """Pushes a one-layer OCI image over the distribution API; returns the manifest digest."""
    def urlopen(req):
        return urllib.request.urlopen(req, context=context)

    def upload(data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        req = urllib.request.Request(f"{base}/v2/{repo}/blobs/uploads/", method="POST")
        with urlopen(req) as r:
            location = r.headers["Location"]
        if location.startswith("/"):
            location = base + location
        sep = "&" if "?" in location else "?"
        req = urllib.request.Request(f"{location}{sep}digest={digest}", data=data, method="PUT",
                                     headers={"Content-Type": "application/octet-stream"})
        urlopen(req).close()
        return digest, len(data)

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        body = b"hello from the berth chart test\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    layer = gzip.compress(raw.getvalue(), mtime=0)
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {
        "type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()]}}).encode()
    layer_d, layer_n = upload(layer)
    config_d, config_n = upload(config)
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_d, "size": config_n},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_d, "size": layer_n}],
    }).encode()
    req = urllib.request.Request(f"{base}/v2/{repo}/manifests/{tag}", data=manifest, method="PUT",
                                 headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    urlopen(req).close()
    return "sha256:" + hashlib.sha256(manifest).hexdigest()


def start_registry(d, tls=None):
    """docker-registry on a free loopback port holding berth/hello:1."""
    port = free_port()
    cfg = d / "config.yml"
    text = (f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {d}/data\n"
            f"http:\n  addr: 127.0.0.1:{port}\n")
    context = None
    if tls:
        cert, key, ca = tls
        text += f"  tls:\n    certificate: {cert}\n    key: {key}\n"
        context = ssl.create_default_context(cafile=str(ca))
    cfg.write_text(text)
    proc = subprocess.Popen(["docker-registry", "serve", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    try:
        wait_for(lambda: urllib.request.urlopen(f"{base}/v2/", context=context).status == 200, "docker-registry")
        digest = push_image(base, "berth/hello", "1", context)
    except BaseException:
        stop(proc)
        raise
    return proc, base, digest


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    proc, base, digest = start_registry(tmp_path_factory.mktemp("registry"))
    try:
        yield base, digest
    finally:
        stop(proc)


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory):
    """A registry with a certificate for 127.0.0.1 signed by a CA of its own."""
    if not shutil.which("openssl"):
        pytest.skip("needs openssl")
    d = tmp_path_factory.mktemp("tls-registry")
    ca_key, ca, key, csr, cert, ext = (d / n for n in ("ca.key", "ca.pem", "srv.key", "srv.csr", "srv.pem", "ext"))
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
            "-subj", "/CN=berth test registry CA", "-keyout", ca_key, "-out", ca)
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", csr)
    ext.write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "2",
            "-extfile", ext, "-out", cert)
    proc, base, digest = start_registry(d, (cert, key, ca))
    try:
        yield base, ca.read_text()
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def containerd(tmp_path_factory):
    d = tmp_path_factory.mktemp("ctd")
    sock = d / "c.sock"
    cfg = d / "config.toml"
    cfg.write_text(f'version = 2\nroot = "{d}/root"\nstate = "{d}/state"\n'
                   'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                   f'[grpc]\n  address = "{sock}"\n[ttrpc]\n  address = "{sock}.ttrpc"\n')
    log = open(d / "containerd.log", "w")
    proc = subprocess.Popen(["containerd", "--config", cfg], stdout=log, stderr=log)
    try:
        wait_for(lambda: subprocess.run(["ctr", "-a", sock, "version"], capture_output=True).returncode == 0,
                 "containerd")
        yield sock
    finally:
        stop(proc)


def fetch(containerd, hosts_dir, ref):
    return subprocess.run(["ctr", "-a", containerd, "-n", "berth-chart-test", "content", "fetch",
                           "--hosts-dir", hosts_dir, ref], capture_output=True, text=True, timeout=60)


def write_hosts(tmp_path, values):
    root = tmp_path / "certs.d"
    for rel, text in chart_files({"registry": {"configPath": str(root), "hosts": values}}).items():
        if rel.startswith("certs.d/"):
            f = tmp_path / rel
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(text)
    return root


def test_containerd_pulls_through_a_rendered_mirror(registry, containerd, tmp_path):
    base, digest = registry
    hosts = write_hosts(tmp_path, {"mirror-test.invalid": {"mirrors": [
        {"url": base, "capabilities": ["pull", "resolve"], "headers": {"X-Berth-Test": "1"}}]}})
    res = fetch(containerd, hosts, "mirror-test.invalid/berth/hello:1")
    assert res.returncode == 0, res.stderr
    assert digest in res.stdout + res.stderr or "done" in res.stdout


def test_containerd_pulls_from_a_rendered_server(registry, containerd, tmp_path):
    base, _ = registry
    hosts = write_hosts(tmp_path, {"server-test.invalid": {"server": base}})
    res = fetch(containerd, hosts, "server-test.invalid/berth/hello:1")
    assert res.returncode == 0, res.stderr


def test_without_the_rendered_file_the_fetch_fails(registry, containerd, tmp_path):
    # The control: the name alone leads nowhere, so the passes above are the files' doing.
    hosts = write_hosts(tmp_path, {"other.invalid": {"server": registry[0]}})
    res = fetch(containerd, hosts, "mirror-test.invalid/berth/hello:1")
    assert res.returncode != 0


def test_containerd_trusts_a_mirror_through_the_rendered_inline_ca(tls_registry, containerd, tmp_path):
    base, ca = tls_registry
    mirror = {"url": base, "capabilities": ["pull", "resolve"], "ca": [ca]}
    hosts = write_hosts(tmp_path, {"tls-test.invalid": {"mirrors": [mirror]}})
    assert (hosts / "tls-test.invalid" / "mirror0-ca0.crt").read_text().strip() == ca.strip()
    res = fetch(containerd, hosts, "tls-test.invalid/berth/hello:1")
    assert res.returncode == 0, res.stderr

    # Control: without the CA the same mirror is refused.
    del mirror["ca"]
    hosts = write_hosts(tmp_path / "no-ca", {"tls-test.invalid": {"mirrors": [mirror]}})
    res = fetch(containerd, hosts, "tls-test.invalid/berth/hello:1")
    assert res.returncode != 0 and "certificate" in res.stderr, res.stderr

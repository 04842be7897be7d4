"""The berth chart, rendered by Helm's own engine (helm-python-sdk embeds the
Helm v4 Go SDK), linted, checked against values.schema.json and the Kubernetes
API schemas, and its config.toml checked by the real berthd.

Run: python3 -m pytest helm/tests (packages: helm/tests/requirements.txt).
"""

import json
import shutil
import subprocess
import tomllib

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

from conftest import CHART, TESTS, berthd_default_config, flat_keys, load_values, require_fresh_berthd

RELEASE = "berth"
NAMESPACE = "berth-system"
# Oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest
# this machine's kubernetes-validate knows.
KUBE_VERSIONS = ["1.26.0", kubernetes_validate.latest_version()]
# hosts.toml keys containerd defines; berthd reads the same file format.
HOSTS_TOP_KEYS = {"server", "capabilities", "skip_verify", "ca", "client", "override_path", "header", "host"}
HOSTS_HOST_KEYS = HOSTS_TOP_KEYS - {"server", "host"}
# Host paths the installer needs whatever the values (see the chart's hostPaths).
REQUIRED_HOST_PATHS = {
    "/usr/local/bin", "/etc/berth", "/run/berth", "/var/lib/berth", "/etc/systemd/system",
    "/run/systemd", "/etc/cni/net.d", "/opt/cni/bin", "/var/lib/kubelet",
}


def render(values, chart=CHART):
    """Renders like `helm template`: schema check first, then the templates."""
    with helm.Chart.load(str(chart)) as c:
        c.validate_schema(values)
        out = c.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs, out


def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def one(docs, kind):
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def env_of(container):
    return {e["name"]: e.get("value") for e in container["env"]}


def host_mounts(ds):
    """mountPath -> (hostPath, propagation) for the installer container."""
    spec = ds["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    out = {}
    for m in spec["containers"][0]["volumeMounts"]:
        vol = volumes[m["name"]]
        if "hostPath" in vol:
            out[m["mountPath"]] = (vol["hostPath"]["path"], m.get("mountPropagation", "None"))
    return out


@pytest.fixture(scope="module")
def default_render():
    return render({})


@pytest.fixture(scope="module")
def full_values():
    return load_values("values-full.yaml")


@pytest.fixture(scope="module")
def full_render(full_values):
    return render(full_values)


# --- lint and schemas ------------------------------------------------------


@pytest.mark.parametrize("values_file", [None, "values-full.yaml"])
def test_lint_is_clean(values_file):
    values = load_values(values_file) if values_file else None
    for kube in KUBE_VERSIONS:
        report = helm.lint(str(CHART), values, strict=True, kube_version=f"v{kube}")
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert not problems and not report["errors"], report


def test_lint_fails_on_a_broken_template(chart_copy):
    tpl = chart_copy / "templates" / "daemonset.yaml"
    tpl.write_text(tpl.read_text().replace("{{- end }}\n\n{{- $switchLabel", "\n\n{{- $switchLabel", 1))
    report = helm.lint(str(chart_copy), strict=True)
    assert report["errors"], report


@pytest.mark.parametrize("name,docs_fixture,extra_kinds", [
    ("default", "default_render", set()),
    ("full", "full_render", {"Service", "ServiceMonitor"}),
])
def test_manifests_match_kubernetes_schemas(name, docs_fixture, extra_kinds, request):
    docs, _ = request.getfixturevalue(docs_fixture)
    assert {d["kind"] for d in docs} == {"ConfigMap", "DaemonSet", "ServiceAccount"} | extra_kinds
    for kube in KUBE_VERSIONS:
        for d in docs:
            if d["kind"] == "ServiceMonitor":
                continue  # a CRD, not in the Kubernetes schemas: test_service_monitor_*
            try:
                kubernetes_validate.validate(d, kube, strict=True)
            except kubernetes_validate.ValidationError as e:
                pytest.fail(f"{name}: {d['kind']} {d['metadata']['name']} invalid for {kube}: {e.message}")


def test_kubernetes_validation_catches_a_bad_field(default_render):
    ds = yaml.safe_load(yaml.safe_dump(one(default_render[0], "DaemonSet")))
    ds["spec"]["template"]["spec"]["hostPID"] = "yes"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ds, KUBE_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("bad", [
    {"config": {"logFormat": "xml"}},
    {"config": {"cgroupDriver": "cgroupv2"}},
    {"config": {"lisen": "unix:///x"}},
    {"tolerationz": []},
    {"registry": {"hosts": {"docker.io": {"mirrors": [{"capabilities": ["pull"]}]}}}},
    {"registry": {"hosts": {"docker.io": {"capabilities": ["fly"]}}}},
    {"registry": {"hosts": {"docker.io": {"ca": ["not a certificate"]}}}},
    {"registry": {"hosts": {"bad/name": {}}}},
    {"kubelet": {"switchRuntime": "yes"}},
    {"binDir": "usr/local/bin"},
    {"streaming": {"port": 70000}},
])
def test_schema_rejects_bad_values(bad):
    with helm.Chart.load(str(CHART)) as c:
        with pytest.raises(helm.HelmError):
            c.validate_schema(bad)


# --- the DaemonSet ---------------------------------------------------------


def test_default_daemonset_is_a_privileged_host_installer(default_render):
    docs, _ = default_render
    ds = one(docs, "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert pod["hostPID"] is True and pod["hostNetwork"] is True
    assert c["securityContext"]["privileged"] is True
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod["tolerations"] == [{"operator": "Exists"}], "must land on every node, tainted or not"
    assert ds["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}
    assert pod["automountServiceAccountToken"] is False
    sa = one(docs, "ServiceAccount")
    assert pod["serviceAccountName"] == sa["metadata"]["name"]

    mounts = host_mounts(ds)
    for path in REQUIRED_HOST_PATHS:
        assert mounts.get("/host" + path, (None,))[0] == path, f"{path} not mounted at /host{path}"
    # Mounts that hold the host's mounts must follow the host's unmounts.
    for path in ("/run/berth", "/var/lib/berth", "/var/lib/kubelet"):
        assert mounts["/host" + path][1] == "HostToContainer", path

    env = env_of(c)
    assert env["KUBELET_MODE"] == "restore"
    assert env["HOST_ROOT"] == "/host"
    assert env["BERTH_ENDPOINT"] == "unix:///run/berth/berth.sock"
    assert c["readinessProbe"]["exec"]["command"][:3] == [
        "/opt/berth/bin/berth", "--runtime-endpoint", "unix:///host/run/berth/berth.sock"]
    assert "checksum/config" in ds["spec"]["template"]["metadata"]["annotations"]


def test_config_change_changes_the_pod_template(default_render):
    docs, _ = default_render
    changed, _ = render({"config": {"logLevel": "debug"}})
    a = one(docs, "DaemonSet")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    b = one(changed, "DaemonSet")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    assert a != b, "a config change must roll the installer pods so berthd is restarted"


def test_switch_splits_nodes_by_label_and_keeps_user_affinity(full_render, full_values):
    docs, _ = full_render
    sets = {d["metadata"]["name"]: d for d in by_kind(docs, "DaemonSet")}
    assert set(sets) == {"berth-runtime", "berth-runtime-switch"}
    label = full_values["kubelet"]["switchLabel"]
    user_terms = full_values["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    for name, mode, op in [("berth-runtime", "restore", "NotIn"), ("berth-runtime-switch", "switch", "In")]:
        ds = sets[name]
        pod = ds["spec"]["template"]["spec"]
        assert env_of(pod["containers"][0])["KUBELET_MODE"] == mode
        terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        assert len(terms) == len(user_terms)
        for term, user in zip(terms, user_terms):
            assert term["matchExpressions"][:-1] == user["matchExpressions"]
            assert term["matchExpressions"][-1] == {"key": label, "operator": op, "values": ["true"]}
        assert pod["tolerations"] == full_values["tolerations"]
        assert pod["nodeSelector"] == full_values["nodeSelector"]
        assert pod["priorityClassName"] == "system-cluster-critical"
        assert ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] == 2
        assert pod["containers"][0]["image"] == "registry.example.internal/berth/installer:1.2.3"
        assert pod["containers"][0]["imagePullPolicy"] == "Always"
        assert pod["imagePullSecrets"] == [{"name": "pull-secret"}]
        assert pod["serviceAccountName"] == "berth-installer"
        # The two sets must not select each other's pods.
        assert ds["spec"]["selector"]["matchLabels"].items() <= ds["spec"]["template"]["metadata"]["labels"].items()
    sel = [tuple(sorted(d["spec"]["selector"]["matchLabels"].items())) for d in sets.values()]
    assert sel[0] != sel[1]


def test_switch_without_user_affinity_adds_one_term():
    docs, _ = render({"kubelet": {"switchRuntime": True}})
    for ds in by_kind(docs, "DaemonSet"):
        terms = ds["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        assert len(terms) == 1 and terms[0]["matchExpressions"][0]["key"] == "berth.dev/switch"


def test_full_values_mount_every_configured_host_path(full_render, full_values):
    docs, _ = full_render
    for ds in by_kind(docs, "DaemonSet"):
        mounts = host_mounts(ds)
        for path in ["/opt/bin", "/data/berth", "/run/berth-alt", "/etc/containerd/certs.d",
                     "/etc/cni/custom.d", "/usr/lib/cni", "/etc/default", "/etc/kubernetes/kubelet"]:
            assert mounts.get("/host" + path, (None,))[0] == path, path
        env = env_of(ds["spec"]["template"]["spec"]["containers"][0])
        assert env["BIN_DIR"] == "/opt/bin"
        assert env["BERTH_ENDPOINT"] == "unix:///run/berth-alt/cri.sock"
        assert env["REGISTRY_CONFIG_PATH"] == "/etc/containerd/certs.d"
        assert env["KUBELET_FLAGS_FILE"] == "/etc/default/kubelet-flags.env"
        assert env["KUBELET_SERVICE"] == "kubelet.service"


# --- config.toml and hosts.toml --------------------------------------------


def configmap_files(docs):
    """path below the installer's /etc/berth-chart -> content, as the kubelet would project it."""
    cm = one(docs, "ConfigMap")
    ds = by_kind(docs, "DaemonSet")[0]
    vol = next(v for v in ds["spec"]["template"]["spec"]["volumes"] if v["name"] == "chart-config")
    items = vol["configMap"]["items"]
    assert vol["configMap"]["name"] == cm["metadata"]["name"]
    assert {i["key"] for i in items} == set(cm["data"]), "every ConfigMap key is projected, and only those"
    return {i["path"]: cm["data"][i["key"]] for i in items}


def test_full_config_toml_carries_every_value(full_render, full_values):
    files = configmap_files(full_render[0])
    cfg = tomllib.loads(files["config.toml"])
    c = full_values["config"]
    assert cfg["listen"] == c["listen"] and cfg["root"] == c["root"] and cfg["state_dir"] == c["stateDir"]
    assert cfg["log_level"] == c["logLevel"] and cfg["log_format"] == "json"
    assert cfg["cgroup_driver"] == "systemd" and cfg["monitor_path"] == c["monitorPath"]
    assert cfg["restrict_oom_score_adj"] is True and cfg["cgroup_parent"] == "/berth-pods"
    assert cfg["volatile_rootfs"] is False
    assert cfg["registry"] == {"config_path": "/etc/containerd/certs.d", "max_concurrent_downloads": 5,
                               "max_unpacked_layer_size": 16 << 30}
    assert cfg["cni"] == {"conf_dir": "/etc/cni/custom.d", "bin_dirs": ["/opt/cni/bin", "/usr/lib/cni"],
                          "cache_dir": "/var/lib/cni/berth", "plugin_timeout_secs": 30}
    assert cfg["streaming"] == {"address": "0.0.0.0", "port": 10010, "token_ttl_secs": 120,
                                "idle_timeout_secs": 3600, "stream_creation_timeout_secs": 15}
    assert cfg["metrics"] == {"address": "10.1.2.3:9338"}


def test_registry_hosts_render_to_valid_hosts_toml(full_render, full_values):
    files = configmap_files(full_render[0])
    hosts = {p.split("/")[1]: tomllib.loads(t) for p, t in files.items() if p.endswith("/hosts.toml")}
    assert set(hosts) == set(full_values["registry"]["hosts"])
    for name, h in hosts.items():
        assert set(h) <= HOSTS_TOP_KEYS, (name, h)
        for url, settings in h.get("host", {}).items():
            assert set(settings) <= HOSTS_HOST_KEYS, (name, url)

    base = "/etc/containerd/certs.d"
    hub = hosts["docker.io"]
    assert hub["server"] == "https://registry-1.docker.io"
    assert hub["capabilities"] == ["pull", "resolve"]
    # Mirrors are tried in file order: the values' order must survive.
    assert list(hub["host"]) == ["https://mirror.example.internal", "http://10.0.0.5:5000/raw/v2"]
    m0 = hub["host"]["https://mirror.example.internal"]
    assert m0["ca"] == [f"{base}/docker.io/mirror0-ca0.crt", "/etc/pki/mirror-ca.pem"]
    assert m0["header"] == {"X-Mirror-Token": 's3cr"et', "X-Multi": ["a", "b"]}
    assert m0["capabilities"] == ["pull", "resolve"] and "skip_verify" not in m0
    m1 = hub["host"]["http://10.0.0.5:5000/raw/v2"]
    assert m1 == {"capabilities": ["pull"], "override_path": True}

    private = hosts["registry.example.com:5443"]
    assert private["skip_verify"] is True
    assert private["ca"] == [f"{base}/registry.example.com:5443/server-ca0.crt", "/etc/pki/internal-ca.pem"]
    assert private["header"] == {"X-Registry-Region": "eu-1"}
    assert list(hosts["_default"]["host"]) == ["https://catch-all.example.internal"]

    # Inline CAs land where hosts.toml says they are.
    for ref in (m0["ca"][0], private["ca"][0]):
        rel = "certs.d/" + ref[len(base) + 1:]
        assert rel in files, rel
        if shutil.which("openssl"):
            subprocess.run(["openssl", "x509", "-noout"], input=files[rel].encode(), check=True)


def test_default_values_render_no_registry_files_and_a_minimal_config(default_render):
    files = configmap_files(default_render[0])
    assert list(files) == ["config.toml"]
    cfg = tomllib.loads(files["config.toml"])
    assert "cni" not in cfg and "streaming" not in cfg and "metrics" not in cfg and "cgroup_parent" not in cfg
    assert cfg["volatile_rootfs"] is True


def run_berthd_dump(tmp_path, text):
    berthd = require_fresh_berthd()
    f = tmp_path / "config.toml"
    f.write_text(text)
    return subprocess.run([berthd, "config", "dump", "--config", f], capture_output=True, text=True)


def test_berthd_accepts_the_default_rendered_config(default_render, tmp_path):
    text = configmap_files(default_render[0])["config.toml"]
    res = run_berthd_dump(tmp_path, text)
    assert res.returncode == 0, res.stderr
    assert tomllib.loads(res.stdout) == berthd_default_config(), "chart defaults must equal berthd's"


# Chart values whose berthd key does not exist yet: they render only when set,
# so a default install never carries them. Remove an entry once berthd knows it.
PENDING_KEYS = set()


def test_every_rendered_key_is_known_to_berthd(full_render):
    known = flat_keys(berthd_default_config())
    rendered = flat_keys(tomllib.loads(configmap_files(full_render[0])["config.toml"]))
    unknown = rendered - known - PENDING_KEYS
    assert not unknown, f"the chart renders keys berthd rejects: {sorted(unknown)}"


def test_every_berthd_key_can_be_set_from_the_chart(full_render):
    known = flat_keys(berthd_default_config())
    rendered = flat_keys(tomllib.loads(configmap_files(full_render[0])["config.toml"]))
    missing = known - rendered
    assert not missing, f"berthd keys with no chart value (add them to values.yaml and _helpers.tpl): {sorted(missing)}"



@pytest.mark.parametrize("switch", [False, True])
def test_notes_tell_what_happens_to_the_kubelet(switch):
    _, out = render({"kubelet": {"switchRuntime": switch}})
    notes = out["berth/templates/NOTES.txt"]
    assert "rollout status daemonset/berth" in notes
    if switch:
        assert "kubelet.switchRuntime is ON" in notes and "berth.dev/switch=true" in notes
        assert "--set kubelet.switchRuntime=false" in notes, "the rollback must be spelt out"
    else:
        assert "kubelets are not touched" in notes


# --- metrics ---------------------------------------------------------------

SERVICE_MONITOR_SCHEMA = json.loads((TESTS / "schemas" / "servicemonitor-v1.json").read_text())


def validate_service_monitor(doc):
    jsonschema.Draft202012Validator(SERVICE_MONITOR_SCHEMA).validate(doc)


def metrics_render(**metrics):
    return render({"metrics": {"enabled": True, **metrics}})[0]


def test_metrics_off_by_default_render_nothing_to_scrape(default_render):
    docs = default_render[0]
    assert not by_kind(docs, "Service") and not by_kind(docs, "ServiceMonitor")
    annotations = one(docs, "DaemonSet")["spec"]["template"]["metadata"]["annotations"]
    assert not any(k.startswith("prometheus.io/") for k in annotations)


def test_metrics_enabled_renders_the_address_and_scrape_annotations():
    docs = metrics_render(port=9555)
    assert not by_kind(docs, "ServiceMonitor"), "only when asked"
    cfg = tomllib.loads(configmap_files(docs)["config.toml"])
    assert cfg["metrics"] == {"address": "0.0.0.0:9555"}
    annotations = one(docs, "DaemonSet")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "9555"
    assert annotations["prometheus.io/path"] == "/metrics"
    docs = metrics_render(podAnnotations=False, address="::")
    cfg = tomllib.loads(configmap_files(docs)["config.toml"])
    assert cfg["metrics"] == {"address": "[::]:9898"}, "IPv6 hosts go in brackets"
    annotations = one(docs, "DaemonSet")["spec"]["template"]["metadata"]["annotations"]
    assert not any(k.startswith("prometheus.io/") for k in annotations)


def test_service_monitor_when_asked_selects_the_installer_pods_and_matches_its_schema():
    docs = metrics_render(port=9444, serviceMonitor={"enabled": True, "interval": "15s",
                                                     "labels": {"release": "prom"}})
    svc, sm = one(docs, "Service"), one(docs, "ServiceMonitor")
    validate_service_monitor(sm)
    for kube in KUBE_VERSIONS:
        kubernetes_validate.validate(svc, kube, strict=True)
    # ServiceMonitor -> Service -> the DaemonSet's pods, on berthd's port.
    assert sm["metadata"]["namespace"] == svc["metadata"]["namespace"] == NAMESPACE
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    pod_labels = one(docs, "DaemonSet")["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert svc["spec"]["clusterIP"] == "None"
    (port,) = svc["spec"]["ports"]
    assert port["port"] == port["targetPort"] == 9444
    (ep,) = sm["spec"]["endpoints"]
    assert ep["port"] == port["name"] and ep["path"] == "/metrics" and ep["interval"] == "15s"
    assert "scrapeTimeout" not in ep
    assert sm["metadata"]["labels"]["release"] == "prom"
    assert {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node",
            "action": "replace"} in ep["relabelings"]


def test_service_monitor_schema_catches_a_bad_field():
    sm = one(metrics_render(serviceMonitor={"enabled": True}), "ServiceMonitor")
    validate_service_monitor(sm)
    for bad in (
        lambda d: d["spec"]["endpoints"][0].update(intervall="30s"),
        lambda d: d["spec"]["endpoints"][0].update(interval="30 seconds"),
        lambda d: d["spec"].pop("selector"),
        lambda d: d["spec"]["endpoints"][0]["relabelings"][0].update(action="rename"),
    ):
        d = yaml.safe_load(yaml.safe_dump(sm))
        bad(d)
        with pytest.raises(jsonschema.ValidationError):
            validate_service_monitor(d)


def test_service_monitor_without_metrics_is_refused():
    with pytest.raises(Exception, match="needs metrics.enabled"):
        render({"metrics": {"serviceMonitor": {"enabled": True}}})

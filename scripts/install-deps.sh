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
  qemu-system-x86 kmod cpio   # the cgroup v2 guest (scripts/cgroup-v2-vm.sh): qemu, depmod, initramfs
  umoci skopeo                # images from another builder (umoci), copied into the test registry
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

# The cgroup v2 guest's kernel: Debian's linux-image, unpacked into a cache dir
# rather than installed, so that this machine's /boot, bootloader and initramfs
# hooks are never touched. depmod makes the modules.dep the guest script reads.
vm_cache="${BERTH_VM_CACHE:-/var/cache/berth-vm}"
if ! ls "$vm_cache"/root/lib/modules/*/modules.dep >/dev/null 2>&1; then
  kpkg=$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -1)
  if [[ -z "$kpkg" ]]; then
    apt-get update -q
    kpkg=$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -1)
  fi
  [[ -n "$kpkg" ]] || { echo "install-deps: cannot resolve linux-image-amd64" >&2; exit 1; }
  rm -rf "$vm_cache" && mkdir -p "$vm_cache"
  (cd "$vm_cache" && apt-get download -qq "$kpkg")
  deb=$(ls "$vm_cache"/*.deb)
  dpkg-deb -x "$deb" "$vm_cache/root"
  rm -f "$deb"
  kver=$(ls "$vm_cache/root/lib/modules")
  depmod -b "$vm_cache/root" "$kver"
fi

# Python packages for the chart tests (a real Helm engine, Kubernetes schemas)
# the independent WebSocket client used by the streaming tests, and Python grpcio.
here="$(cd "$(dirname "$0")/.." && pwd)"
pip_install() {
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore "$@" \
    || python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --break-system-packages "$@"
}
pip_install -r "$here/helm/tests/requirements.txt"
pip_install websocket-client==1.9.2
# A CRI client in another language (gRPC C-core), stubs generated from proto/ at test time.
pip_install grpcio==1.85.4 grpcio-tools==1.85.4

#!/usr/bin/env bash
# Berth's main job, start to finish, on a fresh Debian 12 machine (as root):
# install what is missing, build, start a local registry holding a busybox
# image built from Debian's busybox-static, start berthd, and then, through the
# CRI like a kubelet, pull the image, run a pod on a CNI bridge with an httpd
# container, show its logs, exec into it and fetch its page by pod IP.
# Everything it starts is stopped and removed on exit, also on Ctrl-C.
#
# Environment:
#   QUICKSTART_SKIP_INSTALL=1   do not run scripts/install-deps.sh
#   BERTH_BIN_DIR=DIR           use berthd, berth, berth-monitor and
#                               berth-push-test-images from DIR (no build)
#   QUICKSTART_KEEP_RUNNING=1   leave everything up until Ctrl-C
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
if [ "$(id -u)" != 0 ]; then
  echo "quickstart: run as root (berthd creates namespaces, cgroups and mounts)" >&2
  exit 1
fi

if [ "${QUICKSTART_SKIP_INSTALL:-}" != 1 ]; then
  step "Installing Debian packages (busybox-static, docker-registry, CNI plugins, ...)"
  bash scripts/install-deps.sh
fi

if [ -n "${BERTH_BIN_DIR:-}" ]; then
  bin="$BERTH_BIN_DIR"
else
  step "Building Berth (release)"
  cargo build --release --workspace --bins
  bin="${CARGO_TARGET_DIR:-$here/target}/release"
fi
for b in berthd berth berth-monitor berth-push-test-images; do
  [ -x "$bin/$b" ] || { echo "quickstart: $bin/$b is missing" >&2; exit 1; }
done

# Short on purpose: unix socket paths under the state dir must stay below 108 bytes.
work="$(mktemp -d /tmp/bq.XXXXXX)"
bridge="bq$(( $$ % 10000 ))"
subnet="10.254.$(( $$ % 250 + 1 ))"
registry_pid=""
berthd_pid=""
rule=(FORWARD -i "$bridge" ! -o "$bridge" -j DROP)
berth() { "$bin/berth" -r "unix://$work/berth.sock" -t 30s "$@"; }

cleanup() {
  set +e
  trap - EXIT INT TERM
  step "Cleaning up"
  if [ -n "$berthd_pid" ] && kill -0 "$berthd_pid" 2>/dev/null; then
    for pod in $(berth pods -q 2>/dev/null); do
      berth stopp "$pod" >/dev/null
      berth rmp -f "$pod" >/dev/null
    done
    kill -TERM "$berthd_pid"
    wait "$berthd_pid" 2>/dev/null
  fi
  if [ -n "$registry_pid" ]; then
    kill -TERM "$registry_pid" 2>/dev/null
    wait "$registry_pid" 2>/dev/null
  fi
  iptables -D "${rule[@]}" 2>/dev/null
  ip link del "$bridge" 2>/dev/null
  # Mounts berthd made under the work dir (overlays, namespace pins) are gone
  # once its pods are removed; detach anything left before deleting the dir.
  grep -F " $work/" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do
    umount -l "$m"
  done
  rm -rf "$work"
  echo "done: nothing left running"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { # wait_for SECONDS CMD...
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { echo "quickstart: timed out waiting for: $*" >&2; return 1; }
    sleep 0.2
  done
}

step "Starting a local registry on loopback"
port="$(free_port)"
mkdir -p "$work/registry"
cat > "$work/registry/config.yml" <<EOF
version: 0.1
storage:
  filesystem:
    rootdirectory: $work/registry/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOF
docker-registry serve "$work/registry/config.yml" >"$work/registry/log" 2>&1 &
registry_pid=$!
wait_for 20 python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/v2/')"
echo "registry: http://127.0.0.1:$port"

step "Building the busybox image from busybox-static and pushing it"
"$bin/berth-push-test-images" --registry "127.0.0.1:$port" --images busybox

step "Starting berthd"
# docker.io is mirrored to the local registry (containerd's hosts.toml layout),
# so the plain name `busybox` pulls from it.
mkdir -p "$work/certs.d/docker.io" "$work/net.d"
cat > "$work/certs.d/docker.io/hosts.toml" <<EOF
server = "https://registry-1.docker.io"

[host."http://127.0.0.1:$port"]
  capabilities = ["pull", "resolve"]
EOF
# A bridge network for pods; the iptables rule keeps pod traffic on this machine.
iptables -I "${rule[@]}"
cat > "$work/net.d/10-quickstart.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "berth-quickstart",
  "plugins": [
    {"type": "bridge", "bridge": "$bridge", "isGateway": true, "ipMasq": false,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$subnet.0/24"}]],
              "dataDir": "$work/ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
cat > "$work/config.toml" <<EOF
listen = "unix://$work/berth.sock"
root = "$work/root"
state_dir = "$work/run"
monitor_path = "$bin/berth-monitor"

[registry]
config_path = "$work/certs.d"

[cni]
conf_dir = "$work/net.d"
cache_dir = "$work/cni-cache"
EOF
# In a session of its own: a Ctrl-C at the terminal goes to this script's
# process group, and cleanup still needs berthd to stop and remove the pod
# (containers outlive berthd on purpose, so a berthd gone first leaves them).
setsid "$bin/berthd" --config "$work/config.toml" >"$work/berthd.log" 2>&1 &
berthd_pid=$!
wait_for 30 berth version
berth version
berth info -q

step "Pulling busybox through the CRI"
berth pull busybox
berth images

step "Running a pod with an httpd container"
mkdir -p "$work/logs"
cat > "$work/pod.json" <<EOF
{
  "metadata": {"name": "quickstart", "namespace": "default", "uid": "quickstart-uid", "attempt": 0},
  "hostname": "quickstart",
  "log_directory": "$work/logs",
  "dns_config": {"servers": ["10.96.0.10"], "searches": ["default.svc.cluster.local"]},
  "linux": {}
}
EOF
cat > "$work/httpd.json" <<'EOF'
{
  "metadata": {"name": "httpd"},
  "image": {"image": "busybox"},
  "command": ["sh", "-c", "mkdir -p /www && echo 'hello from a berth pod' > /www/index.html && echo httpd starting && exec httpd -f -v -p 80 -h /www"],
  "log_path": "httpd.log",
  "linux": {}
}
EOF
pod="$(berth runp "$work/pod.json")"
ctr="$(berth create "$pod" "$work/httpd.json" "$work/pod.json")"
berth start "$ctr"
berth pods
berth ps
ip="$(berth inspectp "$pod" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"]["network"]["ip"])')"
echo "pod IP: $ip"

step "Fetching the page from the pod IP"
wait_for 20 python3 -c "import urllib.request; urllib.request.urlopen('http://$ip/', timeout=2)"
python3 -c "import urllib.request; print(urllib.request.urlopen('http://$ip/', timeout=5).read().decode().strip())"

step "Container logs"
berth logs "$ctr"

step "Exec in the container"
berth exec -s "$ctr" sh -c 'echo "hostname: $(hostname)"; echo "pid 1: $(cat /proc/1/cmdline | tr "\0" " ")"; id; cat /etc/resolv.conf'

if [ "${QUICKSTART_KEEP_RUNNING:-}" = 1 ]; then
  step "Everything is up; berth -r unix://$work/berth.sock ... ; Ctrl-C to clean up"
  while true; do sleep 3600; done
fi
step "Stopping and removing the pod"
berth stop "$ctr"
berth rm "$ctr"
berth stopp "$pod"
berth rmp "$pod"
echo
echo "quickstart: OK"

#!/usr/bin/env bash
# Memory of Berth with N running pods (default 50), one busybox `sleep` container
# each: berthd VmRSS idle and loaded, and the per-container overhead as the Pss
# of berthd plus every berth-monitor (shared pages counted once) divided by N.
# Needs root, docker-registry, busybox-static and release binaries
# (`cargo build --release --workspace --bins`; BERTH_BIN_DIR to use others).
set -euo pipefail
bin="${BERTH_BIN_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target/release}"
work=$(mktemp -d /tmp/bm.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p $work/registry $work/net.d $work/certs.d/docker.io $work/logs
cat > $work/registry/config.yml <<EOT
version: 0.1
storage:
  filesystem:
    rootdirectory: $work/registry/data
http:
  addr: 127.0.0.1:$port
EOT
docker-registry serve $work/registry/config.yml > $work/registry/log 2>&1 &
rpid=$!
sleep 1
$bin/berth-push-test-images --registry 127.0.0.1:$port --images busybox >/dev/null
printf 'server = "https://registry-1.docker.io"\n[host."http://127.0.0.1:%s"]\n  capabilities = ["pull", "resolve"]\n' $port > $work/certs.d/docker.io/hosts.toml
echo '{"cniVersion": "1.0.0", "name": "lo-only", "plugins": [{"type": "loopback"}]}' > $work/net.d/99-lo.conflist
cat > $work/config.toml <<EOT
listen = "unix://$work/b.sock"
root = "$work/root"
state_dir = "$work/run"
monitor_path = "$bin/berth-monitor"
[registry]
config_path = "$work/certs.d"
[cni]
conf_dir = "$work/net.d"
cache_dir = "$work/cni"
EOT
$bin/berthd --config $work/config.toml > $work/berthd.log 2>&1 &
bpid=$!
b() { $bin/berth -r unix://$work/b.sock -t 30s "$@"; }
sleep 1
b pull busybox >/dev/null
rss() { awk '/VmRSS/{print $2}' /proc/$1/status; }
echo "berthd idle VmRSS KiB: $(rss $bpid)"
N=${N:-50}
for i in $(seq 1 $N); do
  printf '{"metadata":{"name":"m%s","namespace":"default","uid":"u%s"},"log_directory":"%s/logs","linux":{"security_context":{"namespace_options":{"pid":1}}}}' $i $i $work > $work/p$i.json
  printf '{"metadata":{"name":"c"},"image":{"image":"busybox"},"command":["sleep","3600"],"log_path":"c%s.log"}' $i > $work/c$i.json
  p=$(b runp $work/p$i.json); c=$(b create $p $work/c$i.json $work/p$i.json); b start $c >/dev/null
done
sleep 1
mons=$(pgrep -f "berth-monitor.*$work" || true)
total=0; priv=0; n=0
for m in $mons; do total=$((total + $(rss $m))); priv=$((priv + $(awk '/RssAnon/{print $2}' /proc/$m/status))); n=$((n+1)); done
d=$(rss $bpid)
echo "containers: $N monitors: $n"
echo "berthd VmRSS with $N pods KiB: $d"
echo "monitors VmRSS total KiB: $total (private RssAnon total KiB: $priv)"
pss=0; for m in $mons $bpid; do pss=$((pss + $(awk '/^Pss:/{print $2}' /proc/$m/smaps_rollup))); done
echo "Pss of berthd + all monitors KiB: $pss => per container KiB: $((pss / N))"
echo "(VmRSS berthd + monitors) / containers KiB: $(( (d + total) / N ))"
for p in $(b pods -q); do b stopp $p >/dev/null; b rmp -f $p >/dev/null; done
kill $bpid; wait $bpid || true; kill $rpid; wait $rpid || true
grep -F " $work/" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l
rm -rf $work

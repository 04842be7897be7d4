#!/usr/bin/env bash
# Runs one command inside a qemu guest whose kernel has a pure cgroup v2
# hierarchy (Debian's 6.1 kernel booted with cgroup_no_v1=all), and exits with
# the command's exit code.
#
#   scripts/cgroup-v2-vm.sh [--boot-timeout S] [--timeout S] [--env NAME=VALUE]... -- CMD [ARG]...
#
# The guest sees this machine's whole tree read-only over virtio-9p (so CMD, the
# workspace's binaries and their shared libraries are there at the same paths),
# with a 64 MiB all-zero block device /dev/vda (for device rules and io.max),
# with fresh tmpfs at /tmp, /run, /var/tmp, /var/lib and /var/log (the current
# directory, when under one of them, is bound back over it), its own /proc,
# /sys, /dev and a cgroup2 mount at /sys/fs/cgroup. CMD runs as root in the
# current directory. The guest's console (kernel messages and CMD's output) is
# streamed to stdout as it comes.
#
# The kernel comes from the extracted linux-image .deb that scripts/install-deps.sh
# leaves in $BERTH_VM_CACHE (default /var/cache/berth-vm); nothing is installed
# on this machine's /boot. Emulation is TCG: nested KVM hangs on these machines.
#
# Exit codes: CMD's own; 90 when the guest image cannot be built; 91 when the
# guest does not come up within the boot timeout; 92 when CMD outlives the
# timeout; 93 when the guest dies without reporting an exit code.
set -euo pipefail

boot_timeout=120
timeout=900
guest_env=()
while (($#)); do
  case "$1" in
    --boot-timeout) boot_timeout="$2"; shift 2 ;;
    --timeout) timeout="$2"; shift 2 ;;
    --env) guest_env+=("$2"); shift 2 ;;
    --) shift; break ;;
    *) echo "cgroup-v2-vm: unknown option $1" >&2; exit 2 ;;
  esac
done
if (($# == 0)); then
  echo "usage: $0 [--boot-timeout S] [--timeout S] [--env K=V]... -- CMD [ARG]..." >&2
  exit 2
fi

cache="${BERTH_VM_CACHE:-/var/cache/berth-vm}"
fail_image() { echo "cgroup-v2-vm: $*" >&2; exit 90; }

kernel=$(find "$cache/root/boot" -name "vmlinuz-*" 2>/dev/null | sort -V | tail -1 || true)
[[ -n "$kernel" ]] || fail_image "no kernel under $cache/root/boot: run scripts/install-deps.sh"
kver="${kernel##*/vmlinuz-}"
moddir="$cache/root/lib/modules/$kver"
[[ -f "$moddir/modules.dep" ]] || fail_image "$moddir/modules.dep missing: run scripts/install-deps.sh"
command -v qemu-system-x86_64 >/dev/null || fail_image "qemu-system-x86_64 missing: run scripts/install-deps.sh"
command -v cpio >/dev/null || fail_image "cpio missing: run scripts/install-deps.sh"
[[ -x /bin/busybox ]] || fail_image "/bin/busybox missing (busybox-static)"

work=$(mktemp -d /tmp/berth-vm.XXXXXX)
qpid=""
# shellcheck disable=SC2317 # called through the EXIT trap
cleanup() {
  if [[ -n "$qpid" ]] && kill -0 "$qpid" 2>/dev/null; then
    kill "$qpid" 2>/dev/null || true
    wait "$qpid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- The initramfs: busybox, the modules that bring up virtio-9p, and /init.
# Everything else (overlay for container rootfs, ...) is loaded from the
# 9p-mounted tree once it is up.
initrd="$work/initrd"
mkdir -p "$initrd"/{bin,dev,proc,sys,newroot,lib/modules}
cp /bin/busybox "$initrd/bin/busybox"
# Modules in dependency order, as modules.dep lists them (deepest last there).
declare -A seen=()
order=()
add_module() {
  local rel="$1" line deps d i
  [[ -n "${seen[$rel]:-}" ]] && return 0
  seen[$rel]=1
  line=$(grep -m1 "^$rel:" "$moddir/modules.dep") || fail_image "module $rel not in modules.dep"
  deps="${line#*:}"
  local arr=()
  read -r -a arr <<<"$deps"
  for ((i = ${#arr[@]} - 1; i >= 0; i--)); do
    d="${arr[$i]}"
    add_module "$d"
  done
  order+=("$rel")
}
module_path() { grep -m1 -o "^[^:]*/$1\.ko[^:]*" "$moddir/modules.dep"; }
for m in virtio_pci 9pnet_virtio 9p; do
  rel=$(module_path "$m") || fail_image "module $m not found under $moddir"
  add_module "$rel"
done
: >"$initrd/modules"
for rel in "${order[@]}"; do
  cp "$moddir/$rel" "$initrd/lib/modules/"
  echo "${rel##*/}" >>"$initrd/modules"
done
# Modules the tests need later, loaded from the host tree with insmod.
late=()
for m in overlay veth bridge virtio_blk; do
  rel=$(module_path "$m") || fail_image "module $m not found under $moddir"
  add_module "$rel"
done
for rel in "${order[@]}"; do
  grep -qx "${rel##*/}" "$initrd/modules" || late+=("$moddir/$rel")
done

# The command, with its environment and directory, as a script the guest
# copies into its /run.
run="$initrd/run.sh"
{
  echo "cd $(printf '%q' "$PWD") || exit 97"
  echo "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp"
  echo "export RUST_BACKTRACE=1 BERTH_IN_CGROUP_V2_VM=1"
  for kv in "${guest_env[@]}"; do echo "export $(printf '%q' "$kv")"; done
  printf '%q ' "$@"
  echo
} >"$run"

# A command run from under one of the directories the guest covers with tmpfs
# (a checkout in /tmp, say) keeps its tree: the guest binds back the top
# directory of the path below the tmpfs one (/tmp/checkout for
# /tmp/checkout/integration), which holds the workspace's target/ too.
keep_cwd=false
keep_q=
for d in tmp run var/tmp var/lib var/log; do
  case "$PWD/" in
    "/$d/"*)
      rest=${PWD#/"$d"/}
      keep_q=$(printf '%q' "/$d/${rest%%/*}")
      keep_cwd=true
      ;;
  esac
done

cat >"$initrd/init" <<EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in \$(cat /modules); do insmod /lib/modules/\$m || echo "BERTH-VM: insmod \$m failed"; done
# The 9p device shows up asynchronously after virtio_pci binds.
i=0
until mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=524288,cache=loose hostroot /newroot 2>/dev/null; do
  i=\$((i + 1)); [ \$i -gt 100 ] && { echo "BERTH-VM: 9p mount failed"; poweroff -f; }
  sleep 0.1
done
for m in ${late[*]}; do insmod /newroot\$m || echo "BERTH-VM: insmod \$m failed"; done
cd /newroot
mount -t proc proc proc
mount -t sysfs sys sys
mount -t cgroup2 -o nsdelegate cgroup2 sys/fs/cgroup
mount -t devtmpfs dev dev
mkdir -p dev/pts dev/shm
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts dev/pts
mount -t tmpfs shm dev/shm
if $keep_cwd; then mkdir -p /keep && mount -o bind /newroot$keep_q /keep; fi
for d in tmp run var/tmp var/lib var/log; do
  [ -d \$d ] && mount -t tmpfs -o mode=0755 tmpfs \$d
done
chmod 1777 tmp var/tmp
if $keep_cwd; then mkdir -p .$keep_q && mount -o bind /keep .$keep_q && umount /keep; fi
cp /run.sh run/berth-vm-cmd.sh
ip link set lo up
echo "BERTH-VM-UP \$(uname -r) controllers: \$(cat sys/fs/cgroup/cgroup.controllers)"
# switch_root, not chroot: the 9p tree becomes the real root, so that the
# runtime's pivot_root and mountinfo behave as on a node. busybox sh stays
# PID 1 (it reaps orphans) and powers the guest off when CMD is done.
cat >run/berth-vm-init.sh <<'INIT'
/bin/sh /run/berth-vm-cmd.sh </dev/null
echo "BERTH-VM-EXIT \$?"
sync
/bin/busybox poweroff -f
INIT
cd /
exec switch_root /newroot /bin/busybox sh /run/berth-vm-init.sh
echo "BERTH-VM: switch_root failed"
poweroff -f
EOF
chmod 0755 "$initrd/init"
(cd "$initrd" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initrd.img" \
  || fail_image "cpio of the initramfs failed"

# --- Boot.
log="$work/console.log"
: >"$log"
start=$(date +%s)
qemu-system-x86_64 \
  -accel tcg -cpu max -machine q35 -smp 2 -m 2048 \
  -nodefaults -no-user-config -display none -no-reboot \
  -serial "file:$log" -monitor none \
  -kernel "$kernel" -initrd "$work/initrd.img" \
  -append "console=ttyS0 cgroup_no_v1=all panic=-1 loglevel=4 rdinit=/init" \
  -fsdev "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap" \
  -device "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot" \
  -blockdev "driver=null-co,node-name=scratch,size=67108864,read-zeroes=on" \
  -device "virtio-blk-pci,drive=scratch" \
  </dev/null >"$work/qemu.out" 2>&1 &
qpid=$!
# Stream the console as it comes (sed -u: no block buffering into a pipe);
# tail ends with qemu.
tail -n +1 -f --pid="$qpid" "$log" | sed -u 's/\r$//' &
tailpid=$!

up=0
while kill -0 "$qpid" 2>/dev/null; do
  now=$(date +%s)
  if ((up == 0)); then
    if grep -q "BERTH-VM-UP" "$log"; then
      up=1
      echo "cgroup-v2-vm: guest up after $((now - start)) s" >&2
    elif ((now - start > boot_timeout)); then
      echo "cgroup-v2-vm: guest did not come up within ${boot_timeout} s" >&2
      kill "$qpid"; wait "$tailpid" 2>/dev/null || true
      exit 91
    fi
  elif ((now - start > timeout)); then
    echo "cgroup-v2-vm: command still running after ${timeout} s; stopping the guest" >&2
    kill "$qpid"; wait "$tailpid" 2>/dev/null || true
    exit 92
  fi
  sleep 1
done
wait "$qpid" || true
wait "$tailpid" 2>/dev/null || true
qpid=""
code=$(tr -d '\r' <"$log" | sed -n 's/^BERTH-VM-EXIT \([0-9]*\)$/\1/p' | tail -1)
echo "cgroup-v2-vm: guest ran for $(($(date +%s) - start)) s" >&2
if [[ -z "$code" ]]; then
  echo "cgroup-v2-vm: the guest stopped without reporting an exit code" >&2
  cat "$work/qemu.out" >&2
  exit 93
fi
exit "$code"

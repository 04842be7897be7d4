#!/bin/bash
# Berth node installer: the entrypoint of the installer image, run by the Helm
# chart's DaemonSet (privileged, hostPID) on every node it targets.
#
# It copies berthd, berth and berth-monitor, the systemd unit, the config and
# the registry hosts files from the image and the chart's ConfigMaps onto the
# host (mounted under $HOST_ROOT), enables and (re)starts berthd.service in the
# host's namespaces, waits until berthd answers on its socket, optionally points
# the kubelet at Berth (or back), then sleeps so the pod stays Ready.
#
# Files are replaced by rename, never rewritten in place: a running berthd keeps
# its old binary, and a crash mid-way leaves the old or the new file. berthd is
# restarted only when something it reads at start-up changed; its unit has
# KillMode=process, so running containers and their monitors are not touched.
#
# Kubelet modes (KUBELET_MODE):
#   none     leave the kubelet alone
#   switch   point the kubelet at Berth, keeping a backup of the file changed,
#            and restart it (the chart runs this only on nodes labelled
#            berth.dev/switch=true when kubelet.switchRuntime is on)
#   restore  if a backup from an earlier switch exists, put it back and
#            restart the kubelet (every other node)

set -euo pipefail

HOST_ROOT=${HOST_ROOT:-/host}
BERTH_SRC=${BERTH_SRC:-/opt/berth}
CHART_CONFIG=${CHART_CONFIG:-/etc/berth-chart}
BIN_DIR=${BIN_DIR:-/usr/local/bin}
REGISTRY_CONFIG_PATH=${REGISTRY_CONFIG_PATH:-/etc/berth/certs.d}
BERTH_ENDPOINT=${BERTH_ENDPOINT:-unix:///run/berth/berth.sock}
CNI_CONF_DIR=${CNI_CONF_DIR:-/etc/cni/net.d}
KUBELET_MODE=${KUBELET_MODE:-none}
KUBELET_FLAGS_FILE=${KUBELET_FLAGS_FILE:-/var/lib/kubelet/kubeadm-flags.env}
KUBELET_CONFIG_FILE=${KUBELET_CONFIG_FILE:-/var/lib/kubelet/config.yaml}
KUBELET_SERVICE=${KUBELET_SERVICE:-kubelet}
READY_TIMEOUT=${READY_TIMEOUT:-60}
# Seconds the kubelet gets to stay up after a restart before it counts as failed.
KUBELET_SETTLE_SECS=${KUBELET_SETTLE_SECS:-5}
# Runs a command in the host's namespaces (PID 1's), where systemd lives.
HOST_EXEC=${HOST_EXEC:-nsenter -t 1 -m -u -i -n -p --}
# 1: do the work and exit instead of sleeping (tests, one-off runs).
ONESHOT=${ONESHOT:-0}

BACKUP_SUFFIX=.berth-backup
MANAGED_MARK=.berth-chart
CONFIG_FILE=/etc/berth/config.toml
UNIT_FILE=/etc/systemd/system/berthd.service

log() { echo "berth-installer: $*" >&2; }
die() {
	log "error: $*"
	exit 1
}
host() { # runs "$@" on the host; word splitting of HOST_EXEC is intended
	# shellcheck disable=SC2086
	$HOST_EXEC "$@"
}

# install_file SRC DST MODE: replaces DST by SRC if they differ; sets CHANGED=1 then.
install_file() {
	local src=$1 dst=$2 mode=$3
	if [[ -f $dst ]] && cmp -s "$src" "$dst"; then
		return 0
	fi
	mkdir -p "$(dirname "$dst")"
	local tmp
	tmp=$(mktemp "$(dirname "$dst")/.$(basename "$dst").XXXXXX")
	cp "$src" "$tmp"
	chmod "$mode" "$tmp"
	sync -- "$tmp" 2>/dev/null || true
	mv -f "$tmp" "$dst"
	log "installed $dst"
	CHANGED=1
}

install_binaries() {
	local b
	for b in berthd berth berth-monitor; do
		[[ -x $BERTH_SRC/bin/$b ]] || die "$BERTH_SRC/bin/$b is missing from the image"
		install_file "$BERTH_SRC/bin/$b" "$HOST_ROOT$BIN_DIR/$b" 0755
	done
}

install_unit() {
	local unit
	unit=$(mktemp)
	sed "s#/usr/local/bin/#${BIN_DIR%/}/#g" "$BERTH_SRC/berthd.service" >"$unit"
	install_file "$unit" "$HOST_ROOT$UNIT_FILE" 0644
	rm -f "$unit"
}

install_config() {
	local src=$CHART_CONFIG/config.toml
	[[ -f $src ]] || die "$src is missing (the chart's ConfigMap is not mounted)"
	# The new berthd checks the file before it replaces the old one, so a bad
	# value stops the rollout on the first node instead of breaking berthd.
	"$BERTH_SRC/bin/berthd" config dump --config "$src" >/dev/null ||
		die "config.toml from the chart is rejected by berthd (see above)"
	install_file "$src" "$HOST_ROOT$CONFIG_FILE" 0644
}

# Mirrors the chart's registry directories into the hosts.toml tree. Directories
# the chart created carry a marker file; those the chart no longer lists are
# removed, anything else an operator put there is left alone.
sync_registry() {
	local src=$CHART_CONFIG/certs.d dst=$HOST_ROOT$REGISTRY_CONFIG_PATH
	local d f name
	declare -A want=()
	mkdir -p "$dst"
	if [[ -d $src ]]; then
		for d in "$src"/*/; do
			[[ -d $d ]] || continue
			name=$(basename "$d")
			want[$name]=1
			mkdir -p "$dst/$name"
			for f in "$d"*; do
				if [[ -f $f ]]; then
					install_file "$f" "$dst/$name/$(basename "$f")" 0644
				fi
			done
			for f in "$dst/$name"/*; do
				if [[ -f $f && ! -e $d$(basename "$f") ]]; then
					rm -f "$f"
					log "removed $f"
				fi
			done
			touch "$dst/$name/$MANAGED_MARK"
		done
	fi
	for d in "$dst"/*/; do
		[[ -d $d ]] || continue
		name=$(basename "$d")
		if [[ -f $d$MANAGED_MARK && -z ${want[$name]:-} ]]; then
			rm -rf "$d"
			log "removed registry settings $dst/$name"
		fi
	done
}

berth_ready() {
	"$BERTH_SRC/bin/berth" -r "unix://$HOST_ROOT${BERTH_ENDPOINT#unix://}" -t 2s version >/dev/null 2>&1
}

wait_ready() {
	local i
	for ((i = 0; i < READY_TIMEOUT; i++)); do
		berth_ready && return 0
		sleep 1
	done
	die "berthd does not answer on $BERTH_ENDPOINT after ${READY_TIMEOUT}s; on the node: journalctl -u berthd"
}

# sd_booted(3)'s test, through the host's /run/systemd mount.
require_systemd() {
	[[ -d $HOST_ROOT/run/systemd/system ]] ||
		die "the node does not run systemd (no /run/systemd/system); run berthd under the node's own service manager (docs/deploy.md, \"Without Helm\")"
}

start_berthd() {
	local restart=$1 unit_changed=$2
	if ((unit_changed)); then
		host systemctl daemon-reload
	fi
	host systemctl enable berthd.service
	if ((restart)); then
		log "restarting berthd (running containers are kept)"
		host systemctl restart berthd.service
	else
		host systemctl start berthd.service
	fi
}

check_cni() {
	local conf=$HOST_ROOT$CNI_CONF_DIR
	if ! compgen -G "$conf/*.conf" >/dev/null && ! compgen -G "$conf/*.conflist" >/dev/null &&
		! compgen -G "$conf/*.json" >/dev/null; then
		log "warning: no CNI network config in $CNI_CONF_DIR; pods that are not host-network fail until a network plugin installs one"
	fi
}

# --- kubelet runtime endpoint -------------------------------------------------

# Which file carries the kubelet's runtime endpoint: kubeadm's flags file when
# it sets the flag (flags win over the config file), else the config file.
kubelet_endpoint_file() {
	local flags=$HOST_ROOT$KUBELET_FLAGS_FILE conf=$HOST_ROOT$KUBELET_CONFIG_FILE
	if [[ -f $flags ]] && grep -q -- '--container-runtime-endpoint' "$flags"; then
		echo "$flags"
	elif [[ -f $conf ]]; then
		echo "$conf"
	else
		return 1
	fi
}

# rewrite_endpoint FILE: writes FILE with the runtime (and image service)
# endpoint set to Berth's, through a temp file and a rename.
rewrite_endpoint() {
	local file=$1 tmp
	tmp=$(mktemp "$(dirname "$file")/.$(basename "$file").XXXXXX")
	if [[ $file == "$HOST_ROOT$KUBELET_FLAGS_FILE" ]]; then
		sed -E \
			-e "s#--container-runtime-endpoint[= ][^ \"']*#--container-runtime-endpoint=$BERTH_ENDPOINT#" \
			-e "s#--image-service-endpoint[= ][^ \"']*#--image-service-endpoint=$BERTH_ENDPOINT#" \
			"$file" >"$tmp"
	else
		sed -E \
			-e "s#^containerRuntimeEndpoint:.*#containerRuntimeEndpoint: $BERTH_ENDPOINT#" \
			-e "s#^imageServiceEndpoint:.*#imageServiceEndpoint: $BERTH_ENDPOINT#" \
			"$file" >"$tmp"
		if ! grep -q '^containerRuntimeEndpoint:' "$tmp"; then
			# A last line without its newline must not swallow the new key.
			if [[ -s $tmp && -n $(tail -c 1 "$tmp") ]]; then
				echo >>"$tmp"
			fi
			echo "containerRuntimeEndpoint: $BERTH_ENDPOINT" >>"$tmp"
		fi
	fi
	chmod --reference="$file" "$tmp"
	mv -f "$tmp" "$file"
}

points_at_berth() {
	grep -Eq -- "(--container-runtime-endpoint[= ]|^containerRuntimeEndpoint: *)['\"]?$BERTH_ENDPOINT" "$1"
}

restart_kubelet() {
	host systemctl restart "$KUBELET_SERVICE"
	sleep "$KUBELET_SETTLE_SECS"
	host systemctl is-active --quiet "$KUBELET_SERVICE"
}

kubelet_switch() {
	local file
	file=$(kubelet_endpoint_file) ||
		die "neither $KUBELET_FLAGS_FILE (with --container-runtime-endpoint) nor $KUBELET_CONFIG_FILE exists; switch the kubelet by hand (docs/deploy.md)"
	if points_at_berth "$file"; then
		log "kubelet already uses $BERTH_ENDPOINT ($file)"
		return 0
	fi
	# The first backup is the node's original setup; a later switch keeps it.
	if [[ ! -e $file$BACKUP_SUFFIX ]]; then
		cp -p "$file" "$file$BACKUP_SUFFIX"
	fi
	rewrite_endpoint "$file"
	log "kubelet endpoint set to $BERTH_ENDPOINT in $file (backup: $file$BACKUP_SUFFIX); restarting $KUBELET_SERVICE"
	if ! restart_kubelet; then
		log "kubelet did not come back on Berth; restoring $file"
		cp -p "$file$BACKUP_SUFFIX" "$file"
		host systemctl restart "$KUBELET_SERVICE" || true
		die "kubelet failed with $BERTH_ENDPOINT; restored the previous endpoint"
	fi
	# This pod ran on the previous runtime, which the kubelet no longer manages;
	# the kubelet starts a new one on Berth.
	KUBELET_LEFT=1
}

kubelet_restore() {
	local f restored=0
	for f in "$HOST_ROOT$KUBELET_FLAGS_FILE" "$HOST_ROOT$KUBELET_CONFIG_FILE"; do
		if [[ -f $f$BACKUP_SUFFIX ]]; then
			cp -p "$f$BACKUP_SUFFIX" "$f.berth-restore"
			mv -f "$f.berth-restore" "$f"
			rm -f "$f$BACKUP_SUFFIX"
			log "restored $f from $f$BACKUP_SUFFIX"
			restored=1
		fi
	done
	if ((restored)); then
		log "restarting $KUBELET_SERVICE on its previous runtime"
		restart_kubelet || die "$KUBELET_SERVICE is not active after the restore; on the node: journalctl -u $KUBELET_SERVICE"
		KUBELET_LEFT=1
	fi
}

main() {
	local restart=0 unit_changed=0
	case $KUBELET_MODE in none | switch | restore) ;; *) die "KUBELET_MODE=$KUBELET_MODE is not one of none, switch, restore" ;; esac

	require_systemd
	CHANGED=0
	install_binaries
	restart=$CHANGED
	CHANGED=0
	install_unit
	unit_changed=$CHANGED
	CHANGED=0
	install_config
	if ((CHANGED)); then
		restart=1
	fi
	# berthd reads the hosts files at each pull: no restart for those.
	sync_registry

	start_berthd $((restart || unit_changed)) "$unit_changed"
	wait_ready
	log "berthd is serving $BERTH_ENDPOINT"
	check_cni

	KUBELET_LEFT=0
	case $KUBELET_MODE in
	switch) kubelet_switch ;;
	restore) kubelet_restore ;;
	esac
	if ((KUBELET_LEFT)); then
		log "the kubelet now runs this node's pods on another runtime; this copy exits"
		exit 0
	fi

	if ((ONESHOT)); then
		exit 0
	fi
	trap 'exit 0' TERM INT
	log "done; sleeping"
	sleep infinity &
	wait $!
}

main "$@"

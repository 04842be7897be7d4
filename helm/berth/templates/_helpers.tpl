{{/* Chart name, overridable. */}}
{{- define "berth.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name; kept short enough for the "-switch" suffix. */}}
{{- define "berth.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 56 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 56 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 56 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "berth.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "berth.selectorLabels" -}}
app.kubernetes.io/name: {{ include "berth.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "berth.labels" -}}
helm.sh/chart: {{ include "berth.chart" . }}
{{ include "berth.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "berth.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "berth.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "berth.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Path of the CRI socket from config.listen ("unix:///x" or "/x"). */}}
{{- define "berth.socketPath" -}}
{{- trimPrefix "unix://" .Values.config.listen }}
{{- end }}

{{/*
A registry name as a ConfigMap key fragment: keys allow only [-._a-zA-Z0-9],
registry names may carry a port ("host:5000") or be an IPv6 literal.
*/}}
{{- define "berth.registryKey" -}}
{{- regexReplaceAll "[^-._a-zA-Z0-9]" . "_" }}
{{- end }}

{{/*
config.toml. Strings and lists are written with toJson: a JSON string or array
of strings is also a valid TOML basic string or array, escapes included.
Optional sections appear only when set, since berthd rejects unknown keys and
an older berthd may not know them.
*/}}
{{- define "berth.configToml" -}}
{{- $c := .Values.config -}}
# /etc/berth/config.toml, rendered by the {{ .Chart.Name }} chart {{ .Chart.Version }}
# (release {{ .Release.Name }}). Changes here are overwritten on the next
# rollout: change the chart's values instead. Keys: deploy/config.toml.
listen = {{ $c.listen | toJson }}
root = {{ $c.root | toJson }}
state_dir = {{ $c.stateDir | toJson }}
log_level = {{ $c.logLevel | toJson }}
log_format = {{ $c.logFormat | toJson }}
cgroup_driver = {{ $c.cgroupDriver | toJson }}
monitor_path = {{ $c.monitorPath | toJson }}
restrict_oom_score_adj = {{ $c.restrictOomScoreAdj }}
tolerate_missing_hugetlb_controller = {{ $c.tolerateMissingHugetlbController }}
volatile_rootfs = {{ $c.volatileRootfs }}
{{- with $c.cgroupParent }}
cgroup_parent = {{ toJson . }}
{{- end }}

[registry]
config_path = {{ .Values.registry.configPath | toJson }}
{{- with .Values.registry.maxConcurrentDownloads }}
max_concurrent_downloads = {{ int . }}
{{- end }}
{{- if not (kindIs "invalid" .Values.registry.maxUnpackedLayerSize) }}
max_unpacked_layer_size = {{ int64 .Values.registry.maxUnpackedLayerSize }}
{{- end }}
{{- $cni := .Values.cni }}
{{- if or $cni.confDir $cni.binDirs $cni.cacheDir $cni.pluginTimeoutSecs }}

[cni]
{{- with $cni.confDir }}
conf_dir = {{ toJson . }}
{{- end }}
{{- with $cni.binDirs }}
bin_dirs = {{ toJson . }}
{{- end }}
{{- with $cni.cacheDir }}
cache_dir = {{ toJson . }}
{{- end }}
{{- with $cni.pluginTimeoutSecs }}
plugin_timeout_secs = {{ int . }}
{{- end }}
{{- end }}
{{- $st := .Values.streaming }}
{{- if or $st.address $st.port $st.tokenTtlSecs $st.idleTimeoutSecs $st.streamCreationTimeoutSecs }}

[streaming]
{{- with $st.address }}
address = {{ toJson . }}
{{- end }}
{{- with $st.port }}
port = {{ int . }}
{{- end }}
{{- with $st.tokenTtlSecs }}
token_ttl_secs = {{ int . }}
{{- end }}
{{- with $st.idleTimeoutSecs }}
idle_timeout_secs = {{ int . }}
{{- end }}
{{- with $st.streamCreationTimeoutSecs }}
stream_creation_timeout_secs = {{ int . }}
{{- end }}
{{- end }}
{{- if .Values.metrics.enabled }}

[metrics]
address = {{ include "berth.metricsAddress" . | toJson }}
{{- end }}
{{- with $c.extraToml }}

{{ . }}
{{- end }}
{{- end }}

{{/*
Settings shared by a registry's own server and its mirrors in hosts.toml.
Inline CA texts are written next to hosts.toml as <prefix>-ca<N>.crt and
referenced by absolute path (containerd and berthd both accept that).
Args: s (settings), dir (the registry's directory on the node), prefix.
*/}}
{{- define "berth.hostSettings" -}}
{{- $s := .s }}
{{- with $s.capabilities }}
capabilities = {{ toJson . }}
{{- end }}
{{- if $s.skipVerify }}
skip_verify = true
{{- end }}
{{- if $s.overridePath }}
override_path = true
{{- end }}
{{- $cas := list }}
{{- range $i, $_ := $s.ca }}
{{- $cas = append $cas (printf "%s/%s-ca%d.crt" $.dir $.prefix $i) }}
{{- end }}
{{- range $s.caFiles }}
{{- $cas = append $cas . }}
{{- end }}
{{- with $cas }}
ca = {{ toJson . }}
{{- end }}
{{- with $s.headers }}
{{- $pairs := list }}
{{- range $k, $v := . }}
{{- $pairs = append $pairs (printf "%s = %s" (toJson $k) (toJson $v)) }}
{{- end }}
header = { {{ join ", " $pairs }} }
{{- end }}
{{- end }}

{{/* One registry's hosts.toml. Args: name, r (its values), root (chart context). */}}
{{- define "berth.hostsToml" -}}
{{- $dir := printf "%s/%s" (trimSuffix "/" .root.Values.registry.configPath) .name -}}
# hosts.toml for {{ .name }}, rendered by the {{ .root.Chart.Name }} chart (containerd's format).
{{- with .r.server }}
server = {{ toJson . }}
{{- end }}
{{- include "berth.hostSettings" (dict "s" .r "dir" $dir "prefix" "server") }}

# Always present: containerd 1.6 (and 1.7 before its fix) rejects a file without it.
[host]
{{- range $i, $m := .r.mirrors }}

[host.{{ toJson $m.url }}]
{{- include "berth.hostSettings" (dict "s" $m "dir" $dir "prefix" (printf "mirror%d" $i)) }}
{{- end }}
{{ end }}

{{/*
Host paths the installer pod mounts, as a dict path -> mountPropagation.
Berth's state and the kubelet's directory hold mounts (namespace pins, rootfs,
volumes) that the host unmounts later; HostToContainer lets those unmounts
reach the pod's copy, so the pod never keeps them busy.
*/}}
{{- define "berth.hostPaths" -}}
{{- $p := dict }}
{{- $_ := set $p .Values.binDir "None" }}
{{- $_ := set $p "/etc/berth" "None" }}
{{- $_ := set $p "/run/berth" "HostToContainer" }}
{{- $_ := set $p .Values.config.stateDir "HostToContainer" }}
{{- $_ := set $p (dir (include "berth.socketPath" .)) "HostToContainer" }}
{{- $_ := set $p "/var/lib/berth" "HostToContainer" }}
{{- $_ := set $p .Values.config.root "HostToContainer" }}
{{- $_ := set $p "/etc/systemd/system" "None" }}
{{- $_ := set $p "/run/systemd" "HostToContainer" }}
{{- $_ := set $p (default "/etc/cni/net.d" .Values.cni.confDir) "None" }}
{{- $_ := set $p "/opt/cni/bin" "None" }}
{{- range .Values.cni.binDirs }}
{{- $_ := set $p . "None" }}
{{- end }}
{{- if not (hasPrefix "/etc/berth/" (printf "%s/" (trimSuffix "/" .Values.registry.configPath))) }}
{{- $_ := set $p .Values.registry.configPath "None" }}
{{- end }}
{{- $_ := set $p (dir .Values.kubelet.flagsFile) "HostToContainer" }}
{{- $_ := set $p (dir .Values.kubelet.configFile) "HostToContainer" }}
{{- toJson $p }}
{{- end }}

{{- define "berth.volumeName" -}}
{{- printf "host%s" (regexReplaceAll "[^a-z0-9]+" (lower .) "-") | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
berthd's [metrics] address: host:port, an IPv6 host in brackets.
*/}}
{{- define "berth.metricsAddress" -}}
{{- $m := .Values.metrics }}
{{- if contains ":" $m.address }}[{{ $m.address }}]{{ else }}{{ $m.address }}{{ end }}:{{ int $m.port }}
{{- end }}

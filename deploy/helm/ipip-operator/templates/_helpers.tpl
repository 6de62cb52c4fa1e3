{{/*
Names and labels shared by every object of the chart.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "ipip-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The base name of the objects: fullnameOverride, else the release name when it already
contains the chart name (so `helm install ipip-operator` gives "ipip-operator", the
names the README documents), else "<release>-<chart>". 63 characters at most: it is
also a Service name.
*/}}
{{- define "ipip-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* "name-version" for the helm.sh/chart label ("+" is not allowed in a label value). */}}
{{- define "ipip-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
What selects the agent pods: only labels that never change for a release, because a
DaemonSet's selector is immutable (a version in it would break every upgrade).
*/}}
{{- define "ipip-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ipip-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The recommended labels, on every object. */}}
{{- define "ipip-operator.labels" -}}
{{ include "ipip-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ipip-operator
helm.sh/chart: {{ include "ipip-operator.chart" . }}
{{- end }}

{{/* The agent's ServiceAccount: RBAC binds to it, the DaemonSet runs as it. */}}
{{- define "ipip-operator.serviceAccountName" -}}
{{- include "ipip-operator.fullname" . }}
{{- end }}

{{/*
The `job` label Prometheus gives the agents' targets: the Service name for the
ServiceMonitor, "<namespace>/<name>" for the PodMonitor. The alerts select on both.
*/}}
{{- define "ipip-operator.jobSelector" -}}
job=~"{{ include "ipip-operator.fullname" . }}|{{ .Release.Namespace }}/{{ include "ipip-operator.fullname" . }}"
{{- end }}

{{/*
Where the agent's /metrics, /healthz and /readyz listen (metrics.bind): "loopback" (the
node itself only), "node" (the node's own address, status.hostIP) or "all" (every address
of the node). Empty: "node" when a ServiceMonitor or PodMonitor will scrape the agents,
else "loopback". A monitor with the metrics on loopback would scrape nothing: refused.
*/}}
{{- define "ipip-operator.metricsBind" -}}
{{- $monitored := or .Values.serviceMonitor.enabled .Values.podMonitor.enabled }}
{{- $bind := .Values.metrics.bind | default (ternary "node" "loopback" $monitored) }}
{{- if and $monitored (eq $bind "loopback") }}
{{- fail "serviceMonitor.enabled or podMonitor.enabled needs metrics.bind node or all: on loopback Prometheus cannot reach the agents" }}
{{- end }}
{{- $bind }}
{{- end }}

{{/* The agent's --metrics-address for metrics.bind. $(HOST_IP) is expanded by the kubelet from the container's env. */}}
{{- define "ipip-operator.metricsAddress" -}}
{{- $bind := include "ipip-operator.metricsBind" . }}
{{- if eq $bind "loopback" }}127.0.0.1:{{ .Values.metrics.port }}
{{- else if eq $bind "node" }}[$(HOST_IP)]:{{ .Values.metrics.port }}
{{- else }}:{{ .Values.metrics.port }}
{{- end }}
{{- end }}

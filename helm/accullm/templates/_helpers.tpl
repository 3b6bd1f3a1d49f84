{{/* Names and labels. */}}
{{- define "accullm.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "accullm.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else if contains (include "accullm.name" .) .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "accullm.name" .) | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "accullm.selectorLabels" -}}
app.kubernetes.io/name: {{ include "accullm.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "accullm.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "accullm.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Pods that answer the REST API (group leaders, embedded servers): the Service selects them. */}}
{{- define "accullm.apiPodLabels" -}}
{{ include "accullm.selectorLabels" . }}
accullm.io/api: "true"
{{- end }}

{{- define "accullm.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "accullm.apiKeySecret" -}}
{{- .Values.apiKey.existingSecret | default (printf "%s-api-key" (include "accullm.fullname" .)) }}
{{- end }}

{{- define "accullm.sshSecret" -}}
{{- .Values.mpi.ssh.existingSecret | default (printf "%s-mpi-ssh" (include "accullm.fullname" .)) }}
{{- end }}

{{/* OpenMPI's pinned port ranges (the NetworkPolicy allows exactly these). */}}
{{- define "accullm.oobRange" -}}
{{ .Values.mpi.oobPorts.min | int }}-{{ add .Values.mpi.oobPorts.min .Values.mpi.oobPorts.count -1 | int }}
{{- end }}

{{/*
The `accullm serve` arguments, one YAML list item each: every flag is a real one
(tests/ops/validate_chart.py checks them against `accullm serve --help`).
*/}}
{{- define "accullm.serveArgs" -}}
- serve
- --host=0.0.0.0
- --port={{ .Values.serve.port | int }}
- --model={{ required "model.dir is required" .Values.model.dir }}
- --served-model-name={{ required "model.servedModelName is required" .Values.model.servedModelName }}
{{- with .Values.serve.threads }}
- --threads={{ . | int }}
{{- end }}
- --max-num-seqs={{ .Values.serve.maxNumSeqs | int }}
- --max-batch-tokens={{ .Values.serve.maxBatchTokens | int }}
- --max-queue={{ .Values.serve.maxQueue | int }}
{{- with .Values.serve.maxModelLen }}
- --max-model-len={{ . | int }}
{{- end }}
- --kv-cache-mb={{ .Values.serve.kvCacheMb }}
- --drain-timeout={{ .Values.serve.drainTimeout }}
- --log-level={{ .Values.serve.logLevel }}
{{- if .Values.metrics.noAuth }}
- --metrics-no-auth
{{- end }}
{{- if eq .Values.mode "group" }}
- --activations={{ .Values.group.activations }}
- --activation-transport={{ .Values.group.activationTransport }}
{{- with .Values.group.microBatches }}
- --micro-batches={{ . | int }}
{{- end }}
- --heartbeat-ms={{ .Values.group.heartbeatMs | int }}
- --stage-timeout-ms={{ .Values.group.stageTimeoutMs | int }}
{{- with .Values.metrics.stagePort }}
- --metrics-port={{ . | int }}
{{- end }}
{{- end }}
{{- range .Values.serve.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}

{{/* The API key as $ACCULLM_API_KEY (never on the command line: it would show in ps). */}}
{{- define "accullm.apiKeyEnv" -}}
- name: ACCULLM_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "accullm.apiKeySecret" . }}
      key: {{ .Values.apiKey.secretKey }}
{{- end }}

{{- define "accullm.apiProbes" -}}
startupProbe:
  httpGet: {path: /healthz, port: http}
  periodSeconds: {{ .Values.probes.startup.periodSeconds | int }}
  failureThreshold: {{ .Values.probes.startup.failureThreshold | int }}
  timeoutSeconds: {{ .Values.probes.startup.timeoutSeconds | int }}
livenessProbe:
  httpGet: {path: /healthz, port: http}
  periodSeconds: {{ .Values.probes.liveness.periodSeconds | int }}
  failureThreshold: {{ .Values.probes.liveness.failureThreshold | int }}
  timeoutSeconds: {{ .Values.probes.liveness.timeoutSeconds | int }}
readinessProbe:
  httpGet: {path: /readyz, port: http}
  periodSeconds: {{ .Values.probes.readiness.periodSeconds | int }}
  failureThreshold: {{ .Values.probes.readiness.failureThreshold | int }}
  timeoutSeconds: {{ .Values.probes.readiness.timeoutSeconds | int }}
{{- end }}

{{- define "accullm.modelVolumeMount" -}}
- name: model
  mountPath: {{ .Values.model.mountPath }}
  readOnly: true
{{- end }}

{{- define "accullm.modelVolume" -}}
- name: model
  {{- toYaml .Values.model.volume | nindent 2 }}
{{- end }}

{{/* Scheduling and pod-level settings shared by every pod. */}}
{{- define "accullm.podCommon" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
# Longer than --drain-timeout: requests in flight finish after SIGTERM.
terminationGracePeriodSeconds: {{ add (.Values.serve.drainTimeout | int) 15 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

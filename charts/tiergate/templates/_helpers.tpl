{{/* Names, labels and shared pod parts of the tiergate chart. */}}

{{- define "tiergate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tiergate.fullname" -}}
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

{{/* Name of one component's objects: (dict "root" $ "component" "api"). */}}
{{- define "tiergate.component" -}}
{{- printf "%s-%s" (include "tiergate.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tiergate.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end }}

{{- define "tiergate.labels" -}}
app.kubernetes.io/name: {{ include "tiergate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* Selector labels of one component: (dict "root" $ "component" "api"). */}}
{{- define "tiergate.selector" -}}
app.kubernetes.io/name: {{ include "tiergate.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* All labels of one component's objects. */}}
{{- define "tiergate.componentLabels" -}}
{{ include "tiergate.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Namespaces the operator watches; empty list = cluster-wide. */}}
{{- define "tiergate.watchNamespaces" -}}
{{- if .Values.operator.watchNamespaces }}
{{- toJson .Values.operator.watchNamespaces }}
{{- else if .Values.rbac.namespaced }}
{{- toJson (list .Release.Namespace) }}
{{- else }}
{{- toJson list }}
{{- end }}
{{- end }}

{{/* Namespaces where sender workers run (for their NetworkPolicy). */}}
{{- define "tiergate.workerNamespaces" -}}
{{- $watched := include "tiergate.watchNamespaces" . | fromJsonArray }}
{{- if .Values.workers.namespaces }}{{ toJson .Values.workers.namespaces }}
{{- else if $watched }}{{ toJson $watched }}
{{- else }}{{ toJson (list .Release.Namespace) }}{{ end }}
{{- end }}

{{/* Secret names: the user's existing one, or the chart's. */}}
{{- define "tiergate.apiSecret" -}}
{{- default (include "tiergate.component" (dict "root" . "component" "api-tokens")) .Values.api.auth.existingSecret }}
{{- end }}
{{- define "tiergate.webhookSecret" -}}
{{- default (include "tiergate.component" (dict "root" . "component" "api-webhooks")) .Values.api.webhooks.existingSecret }}
{{- end }}
{{- define "tiergate.replaySecret" -}}
{{- default (include "tiergate.component" (dict "root" . "component" "replay-tokens")) .Values.replay.auth.existingSecret }}
{{- end }}
{{- define "tiergate.upstreamSecret" -}}
{{- default (include "tiergate.component" (dict "root" . "component" "upstream")) .Values.upstream.existingSecret }}
{{- end }}
{{- define "tiergate.storeClaim" -}}
{{- default (include "tiergate.component" (dict "root" . "component" "store")) .Values.store.sqlite.persistence.existingClaim }}
{{- end }}

{{- define "tiergate.storeUrl" -}}
sqlite://{{ trimSuffix "/" .Values.store.sqlite.mountPath }}/{{ .Values.store.sqlite.file }}
{{- end }}

{{/* TIERGATE_STORE_URL of the API and replay containers. */}}
{{- define "tiergate.storeEnv" -}}
{{- if eq .Values.store.engine "postgresql" }}
- name: TIERGATE_STORE_URL
  valueFrom:
    secretKeyRef: {name: {{ .Values.store.postgresql.existingSecret }}, key: {{ .Values.store.postgresql.key }}}
{{- else }}
- name: TIERGATE_STORE_URL
  value: {{ include "tiergate.storeUrl" . | quote }}
{{- end }}
{{- end }}

{{/* Volumes every tiergate pod has: /tmp, and the SQLite store when the engine is sqlite. */}}
{{- define "tiergate.volumes" -}}
- name: tmp
  emptyDir: {}
{{- if and .store (eq .root.Values.store.engine "sqlite") }}
{{- $sqlite := .root.Values.store.sqlite }}
- name: store
{{- if eq $sqlite.volume "hostPath" }}
  hostPath:
    path: {{ $sqlite.hostPath }}
    type: DirectoryOrCreate
{{- else if eq $sqlite.volume "persistentVolumeClaim" }}
  persistentVolumeClaim:
    claimName: {{ include "tiergate.storeClaim" .root }}
{{- else }}
  emptyDir: {}
{{- end }}
{{- end }}
{{- end }}

{{- define "tiergate.volumeMounts" -}}
- {name: tmp, mountPath: /tmp}
{{- if and .store (eq .root.Values.store.engine "sqlite") }}
- {name: store, mountPath: {{ .root.Values.store.sqlite.mountPath }}}
{{- end }}
{{- end }}

{{/* Pod-level fields shared by every component: (dict "root" $ "values" .Values.api). */}}
{{- define "tiergate.podCommon" -}}
securityContext: {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* HTTP probes on /healthz (liveness) and /readyz (readiness) of a named port. */}}
{{- define "tiergate.probes" -}}
livenessProbe:
  httpGet: {path: /healthz, port: {{ .port }}}
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /readyz, port: {{ .port }}}
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 3
{{- end }}

{{/* The documents of deploy/operator/rbac.yaml (the one source of the operator's rules). */}}
{{- define "tiergate.operatorRbacDocs" -}}
{{- $docs := list }}
{{- range $doc := splitList "\n---" (.Files.Get "files/operator-rbac.yaml") }}
{{- $obj := fromYaml $doc }}
{{- if and $obj (get $obj "kind") }}
{{- $docs = append $docs $obj }}
{{- end }}
{{- end }}
{{- toJson $docs }}
{{- end }}

{{/* Rules of one kind (ClusterRole or Role) in deploy/operator/rbac.yaml. */}}
{{- define "tiergate.operatorRules" -}}
{{- $kind := .kind }}
{{- range $obj := include "tiergate.operatorRbacDocs" .root | fromJsonArray }}
{{- if eq (get $obj "kind") $kind }}
{{- toYaml (get $obj "rules") }}
{{- end }}
{{- end }}
{{- end }}

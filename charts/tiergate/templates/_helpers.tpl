{{/* Common names and labels of the tiergate chart. */}}
{{- define "tiergate.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end }}

{{- define "tiergate.labels" -}}
app.kubernetes.io/name: tiergate
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}

{{- define "tiergate.selector" -}}
app.kubernetes.io/name: tiergate
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "tiergate.storeUrl" -}}
sqlite:///var/lib/tiergate/store/{{ .Values.store.file }}
{{- end }}

{{/* The store volume; hostPath is created root-owned, so the init container hands it over. */}}
{{- define "tiergate.storeVolume" -}}
- name: store
{{- if eq .Values.store.type "hostPath" }}
  hostPath:
    path: {{ .Values.store.hostPath }}
    type: DirectoryOrCreate
{{- else }}
  emptyDir: {}
{{- end }}
{{- end }}

{{/* The ClusterRole rules of deploy/operator/rbac.yaml (the one source of them). */}}
{{- define "tiergate.operatorRules" -}}
{{- range $doc := splitList "\n---" (.Files.Get "files/operator-rbac.yaml") }}
{{- $obj := fromYaml $doc }}
{{- if and $obj (eq (get $obj "kind") "ClusterRole") }}
{{- toYaml (get $obj "rules") }}
{{- end }}
{{- end }}
{{- end }}

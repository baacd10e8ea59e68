{{/* Helm's own labels, on every object's metadata (never on pod templates or selectors). */}}
{{- define "straddle.helmLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
straddle.image picks the override or the default, then moves it to the registry if one is given, as
`straddle install --image-registry` does: the registry part of the reference (a first component with a dot, a
colon or "localhost") is replaced, otherwise prepended. Call with (list DEFAULT OVERRIDE REGISTRY).
*/}}
{{- define "straddle.image" -}}
{{- $ref := index . 0 -}}
{{- with index . 1 }}{{ $ref = . }}{{ end -}}
{{- $registry := trimSuffix "/" (index . 2) -}}
{{- if not $registry -}}
{{ $ref }}
{{- else if regexMatch "^([^/]*[.:][^/]*|localhost)/" $ref -}}
{{ $registry }}/{{ regexReplaceAll "^[^/]+/" $ref "" }}
{{- else -}}
{{ $registry }}/{{ $ref }}
{{- end -}}
{{- end -}}

{{- define "straddle.serverImage" -}}
{{ include "straddle.image" (list "ghcr.io/straddle-io/straddle:dev" .Values.image .Values.imageRegistry) }}
{{- end -}}

{{/* The filesystem location's volume and mount, in the controller and node-agent pods. */}}
{{- define "straddle.locationMount" -}}
{{- if eq .Values.storage.provider "filesystem" }}
- name: backup-location
  mountPath: {{ .Values.storage.path | quote }}
{{- end -}}
{{- end -}}
{{- define "straddle.locationVolume" -}}
{{- if eq .Values.storage.provider "filesystem" }}
- name: backup-location
  hostPath:
    path: {{ .Values.storage.path | quote }}
    type: DirectoryOrCreate
{{- end -}}
{{- end -}}

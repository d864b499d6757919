{{/* Labels every object of the release carries. */}}
{{- define "tagrelay.labels" -}}
app.kubernetes.io/part-of: tagrelay
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* The selector of one service's pods; `name` is the service's key. */}}
{{- define "tagrelay.selector" -}}
app.kubernetes.io/name: tagrelay-{{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end }}

{{/* The NATS URL the services use: the bundled chart's Service or externalNats.url. */}}
{{- define "tagrelay.natsURL" -}}
{{- if .Values.nats.enabled -}}
nats://{{ .Values.nats.fullnameOverride }}.{{ .Release.Namespace }}.svc:4222
{{- else -}}
{{- required "externalNats.url is required when nats.enabled is false" .Values.externalNats.url -}}
{{- end -}}
{{- end }}

{{/* Stream and bucket replicas: the bundled single node gets 1. */}}
{{- define "tagrelay.replicas" -}}
{{- if .Values.nats.enabled -}}
{{- if and .Values.nats.config.cluster .Values.nats.config.cluster.enabled -}}3{{- else -}}1{{- end -}}
{{- else -}}
{{ .Values.externalNats.replicas }}
{{- end -}}
{{- end }}

{{/* The app name (app.kubernetes.io/name). */}}
{{- define "ecr-creds-refresher.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object names: the release name when it contains the chart name, else release-chart. */}}
{{- define "ecr-creds-refresher.fullname" -}}
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

{{/* Labels on every object (the kustomize install's, plus Helm's own). */}}
{{- define "ecr-creds-refresher.labels" -}}
app.kubernetes.io/name: {{ include "ecr-creds-refresher.name" . }}
app.kubernetes.io/part-of: ecr-creds-refresher
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector of the operator pods (immutable on the Deployment: keep it small). */}}
{{- define "ecr-creds-refresher.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ecr-creds-refresher.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "ecr-creds-refresher.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ecr-creds-refresher.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag[@digest]; the tag defaults to appVersion and is never `latest`. */}}
{{- define "ecr-creds-refresher.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag | toString }}
{{- if eq $tag "latest" }}
{{- fail "image.tag: use a version (and optionally image.digest), not latest" }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

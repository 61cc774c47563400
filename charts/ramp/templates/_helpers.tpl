{{/*
Names and labels shared by every template of the chart.
*/}}

{{- define "ramp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The prefix of every object name: the release name when it already says ramp. */}}
{{- define "ramp.fullname" -}}
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

{{- define "ramp.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ramp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ramp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "ramp.labels" -}}
helm.sh/chart: {{ include "ramp.chart" . }}
{{ include "ramp.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ramp
{{- end }}

{{- define "ramp.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ramp.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The Lease the controller holds while it leads: upstream's name, so Ramp and Argo Rollouts
running side by side in one namespace never both act.
*/}}
{{- define "ramp.leaseName" -}}
{{- if .Values.controller.instanceID }}
{{- printf "argo-rollouts-controller-lock-%s" .Values.controller.instanceID }}
{{- else }}
{{- print "argo-rollouts-controller-lock" }}
{{- end }}
{{- end }}

{{- define "ramp.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

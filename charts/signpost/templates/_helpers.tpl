{{/* Names and labels shared by every template. */}}

{{/* The release's base name: the release name, or release-chart when it does not contain the chart's name. */}}
{{- define "signpost.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 54 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 54 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 54 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The operator's objects (Deployment, ServiceAccount, Service, RBAC): signpost-operator for release `signpost`. */}}
{{- define "signpost.operator.name" -}}
{{- printf "%s-operator" (include "signpost.fullname" .) -}}
{{- end -}}

{{- define "signpost.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: signpost
{{- end -}}

{{/* Selector labels: stable across upgrades (a Deployment's selector is immutable). */}}
{{- define "signpost.operator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "signpost.router.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: router
{{- end -}}

{{/* image: REPOSITORY:TAG, or REPOSITORY@DIGEST; the tag defaults to the chart's appVersion. */}}
{{- define "signpost.image" -}}
{{- if .digest -}}
{{- printf "%s@%s" .repository .digest -}}
{{- else -}}
{{- printf "%s:%s" .repository (.tag | default $.appVersion) -}}
{{- end -}}
{{- end -}}

{{- define "signpost.operator.image" -}}
{{- include "signpost.image" (merge (dict "appVersion" .Chart.AppVersion) .Values.operator.image) -}}
{{- end -}}

{{- define "signpost.router.image" -}}
{{- include "signpost.image" (merge (dict "appVersion" .Chart.AppVersion) .Values.router.image) -}}
{{- end -}}

{{/* The in-cluster DNS name of the distribution Service, which router pods dial. */}}
{{- define "signpost.operator.serviceHost" -}}
{{- printf "%s.%s.svc" (include "signpost.operator.name" .) .Release.Namespace -}}
{{- end -}}

{{- define "signpost.distributionEndpoint" -}}
{{- .Values.operator.distribution.endpoint | default (printf "https://%s:%d" (include "signpost.operator.serviceHost" .) (int .Values.operator.distribution.port)) -}}
{{- end -}}

{{/* The namespace whose Signpost objects the operator watches; empty means all namespaces. */}}
{{- define "signpost.watchNamespace" -}}
{{- .Values.operator.watchNamespace -}}
{{- end -}}

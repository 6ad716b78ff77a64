{{/* Names, labels and the values derived from several keys, shared by every template. */}}

{{/* The release's base name: the release name, or release-chart when it lacks the chart name. */}}
{{- define "flowpod.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "flowpod.labels" -}}
app.kubernetes.io/name: flowpod
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: flowpod
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "flowpod.operatorSelector" -}}
app.kubernetes.io/name: flowpod
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "flowpod.minioSelector" -}}
app.kubernetes.io/name: flowpod
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: minio
{{- end -}}

{{- define "flowpod.uiSelector" -}}
app.kubernetes.io/name: flowpod
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: ui
{{- end -}}

{{- define "flowpod.uiServiceAccount" -}}
{{- .Values.ui.serviceAccount.name | default (printf "%s-ui" (include "flowpod.fullname" .)) -}}
{{- end -}}

{{/* The dashboard's namespaces as a JSON list: ui.namespaces, or operator.watchNamespaces when
it is null (unset); an empty list means every namespace. */}}
{{- define "flowpod.uiNamespaces" -}}
{{- $namespaces := .Values.ui.namespaces -}}
{{- if kindIs "invalid" $namespaces -}}
{{- $namespaces = .Values.operator.watchNamespaces -}}
{{- end -}}
{{- toJson ($namespaces | default list) -}}
{{- end -}}

{{- define "flowpod.operatorServiceAccount" -}}
{{- .Values.operator.serviceAccount.name | default (printf "%s-operator" (include "flowpod.fullname" .)) -}}
{{- end -}}

{{- define "flowpod.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* The image of task and flow pods whose run names none. */}}
{{- define "flowpod.podImage" -}}
{{- .Values.pods.image | default (include "flowpod.image" .) -}}
{{- end -}}

{{/* The Secret holding S3 credentials ("" when pods use their own AWS credential chain). */}}
{{- define "flowpod.s3Secret" -}}
{{- if .Values.s3.existingSecret -}}
{{- .Values.s3.existingSecret -}}
{{- else if .Values.minio.enabled -}}
{{- printf "%s-s3" (include "flowpod.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "flowpod.minioService" -}}
{{- printf "%s-minio" (include "flowpod.fullname" .) -}}
{{- end -}}

{{/* The S3 endpoint pods use: the value, else the dev MinIO's Service, else AWS (""). */}}
{{- define "flowpod.s3Endpoint" -}}
{{- if .Values.s3.endpoint -}}
{{- .Values.s3.endpoint -}}
{{- else if .Values.minio.enabled -}}
{{- printf "http://%s.%s.svc:%d" (include "flowpod.minioService" .) .Release.Namespace (int .Values.minio.service.port) -}}
{{- end -}}
{{- end -}}

{{/* Task-pod defaults the operator applies where a run's spec is silent, as JSON. */}}
{{- define "flowpod.podDefaults" -}}
{{- $defaults := dict -}}
{{- with .Values.pods.imagePullPolicy }}{{ $_ := set $defaults "imagePullPolicy" . }}{{ end -}}
{{- with .Values.pods.resources }}{{ $_ := set $defaults "resources" . }}{{ end -}}
{{- with .Values.pods.nodeSelector }}{{ $_ := set $defaults "nodeSelector" . }}{{ end -}}
{{- with .Values.pods.tolerations }}{{ $_ := set $defaults "tolerations" . }}{{ end -}}
{{- toJson $defaults -}}
{{- end -}}

{{/* Every run namespace must be watched, or its runs would never start: fail the install. */}}
{{- define "flowpod.validate" -}}
{{- if .Values.operator.watchNamespaces -}}
{{- range .Values.runNamespaces -}}
{{- if not (has . $.Values.operator.watchNamespaces) -}}
{{- fail (printf "runNamespaces lists %q but operator.watchNamespaces does not: the operator would never start its runs. Add it to operator.watchNamespaces, or set operator.watchNamespaces to [] to watch every namespace." .) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and .Values.minio.enabled .Values.s3.endpoint -}}
{{- fail "minio.enabled runs a dev MinIO that the chart points the operator at; leave s3.endpoint empty with it (or disable minio to use your own S3)." -}}
{{- end -}}
{{- end -}}

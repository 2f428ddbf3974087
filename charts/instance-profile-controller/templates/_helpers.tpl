{{/* The chart name, overridable. */}}
{{- define "instance-profile-controller.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full resource name: <release>-<chart>, or the release name when it already contains the chart name. */}}
{{- define "instance-profile-controller.fullname" -}}
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

{{- define "instance-profile-controller.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "instance-profile-controller.selectorLabels" -}}
app.kubernetes.io/name: {{ include "instance-profile-controller.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "instance-profile-controller.labels" -}}
helm.sh/chart: {{ include "instance-profile-controller.chart" . }}
{{ include "instance-profile-controller.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "instance-profile-controller.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "instance-profile-controller.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "instance-profile-controller.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Replicas that actually run: without leader election two replicas would both reconcile, so one. */}}
{{- define "instance-profile-controller.replicas" -}}
{{- if .Values.leaderElection.enabled }}{{ .Values.replicas }}{{ else }}1{{ end }}
{{- end }}

{{/* Rules for bindings and the Events about them: in the ClusterRole, or in a Role when watchNamespace is set. */}}
{{- define "instance-profile-controller.bindingRules" -}}
- apiGroups: ["iam.instanceprofile.dev"]
  resources: ["instanceprofilebindings"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["iam.instanceprofile.dev"]
  resources: ["instanceprofilebindings/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["iam.instanceprofile.dev"]
  resources: ["instanceprofilebindings/finalizers"]
  verbs: ["update"]
# Normal and Warning Events on bindings, through either Events API.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

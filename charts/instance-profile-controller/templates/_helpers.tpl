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

{{/*
The labels of every object: the chart's own, then those of commonLabels the
chart does not set itself (its own win, so the selector labels always match).
*/}}
{{- define "instance-profile-controller.labels" -}}
helm.sh/chart: {{ include "instance-profile-controller.chart" . }}
{{ include "instance-profile-controller.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: controller
{{- include "instance-profile-controller.moreLabels" (list (.Values.commonLabels | default dict) (dict "helm.sh/chart" true "app.kubernetes.io/name" true "app.kubernetes.io/instance" true "app.kubernetes.io/version" true "app.kubernetes.io/managed-by" true "app.kubernetes.io/component" true)) }}
{{- end }}

{{/*
The labels of every object, then those of an object's own extra labels
(podLabels, serviceMonitor.labels, a policy's labels) not set already:
include "instance-profile-controller.labelsWith" (list $ $extra).
*/}}
{{- define "instance-profile-controller.labelsWith" -}}
{{- $labels := include "instance-profile-controller.labels" (index . 0) }}
{{- $labels }}
{{- include "instance-profile-controller.moreLabels" (list (index . 1 | default dict) ($labels | fromYaml)) }}
{{- end }}

{{/* (list $more $set): "\n"-led YAML of the labels in $more whose keys are not in $set. */}}
{{- define "instance-profile-controller.moreLabels" -}}
{{- $more := dict }}
{{- range $key, $value := index . 0 }}
{{- if not (hasKey (index $ 1) $key) }}
{{- $_ := set $more $key $value }}
{{- end }}
{{- end }}
{{- with $more }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The IRSA role: serviceAccount.roleArn, or the eks.amazonaws.com/role-arn
annotation in serviceAccount.annotations; both set to different ARNs fail
the render, since which one wins would be an accident of map order.
*/}}
{{- define "instance-profile-controller.roleArn" -}}
{{- $fromValue := .Values.serviceAccount.roleArn | default "" }}
{{- $fromAnnotation := get (.Values.serviceAccount.annotations | default dict) "eks.amazonaws.com/role-arn" | default "" }}
{{- if and $fromValue $fromAnnotation (ne $fromValue $fromAnnotation) }}
{{- fail (printf "serviceAccount.roleArn (%s) and serviceAccount.annotations[\"eks.amazonaws.com/role-arn\"] (%s) name different IAM roles: set the role once, in serviceAccount.roleArn" $fromValue $fromAnnotation) }}
{{- end }}
{{- $fromValue | default $fromAnnotation }}
{{- end }}

{{- define "instance-profile-controller.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "instance-profile-controller.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* <repository>@<digest> when image.digest is set, else <repository>:<tag or appVersion>. */}}
{{- define "instance-profile-controller.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
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

{{/*
The controller's flags, without the subcommand, as a YAML list. Each flag is
one item, --name=value, so extraArgs can replace it by name.
*/}}
{{- define "instance-profile-controller.flags" -}}
{{- $flags := list (printf "--cluster-id=%s" .Values.clusterId) (printf "--profile-path-prefix=%s" .Values.profilePathPrefix) }}
{{- with .Values.aws.region }}
{{- $flags = append $flags (printf "--region=%s" .) }}
{{- end }}
{{- with .Values.aws.endpointUrl }}
{{- $flags = append $flags (printf "--aws-endpoint-url=%s" .) }}
{{- end }}
{{- $flags = append $flags (printf "--concurrency=%d" (int .Values.concurrency)) }}
{{- $flags = append $flags (printf "--resync-interval=%s" .Values.resyncInterval) }}
{{- $flags = append $flags (printf "--rate-limit-iam-read=%s" .Values.rateLimits.iamRead) }}
{{- $flags = append $flags (printf "--rate-limit-iam-write=%s" .Values.rateLimits.iamWrite) }}
{{- $flags = append $flags (printf "--rate-limit-ec2-read=%s" .Values.rateLimits.ec2Read) }}
{{- $flags = append $flags (printf "--rate-limit-ec2-write=%s" .Values.rateLimits.ec2Write) }}
{{- $flags = append $flags (printf "--role-cache-ttl=%s" .Values.roleCacheTtl) }}
{{- /* Values newer than 0.1.0 default here too: `helm upgrade --reuse-values` keeps the old values file. */}}
{{- $flags = append $flags (printf "--profile-quota-reserve=%d" (int (.Values.profileQuotaReserve | default 0))) }}
{{- if (.Values.nodeSelection | default dict).enabled }}
{{- $flags = append $flags "--watch-nodes=true" }}
{{- end }}
{{- $sweep := dict "interval" "30m" "mode" "report" "grace" "1h" }}
{{- range $k, $v := (.Values.orphanSweep | default dict) }}
{{- $_ := set $sweep $k $v }}
{{- end }}
{{- $flags = append $flags (printf "--orphan-sweep-interval=%s" (toString $sweep.interval)) }}
{{- $flags = append $flags (printf "--orphan-sweep=%s" $sweep.mode) }}
{{- $flags = append $flags (printf "--orphan-grace=%s" (toString $sweep.grace)) }}
{{- with (.Values.events | default dict).queue }}
{{- $flags = append $flags (printf "--event-queue=%s" .) }}
{{- end }}
{{- $flags = append $flags (printf "--assume-role-duration-seconds=%d" (int .Values.assumeRoleDurationSeconds)) }}
{{- $flags = append $flags (printf "--log-format=%s" .Values.logging.format) }}
{{- $flags = append $flags (printf "--log-level=%s" .Values.logging.level) }}
{{- with .Values.watchNamespace }}
{{- $flags = append $flags (printf "--namespace=%s" .) }}
{{- end }}
{{- $flags = append $flags (printf "--metrics-addr=0.0.0.0:%d" (int .Values.metrics.port)) }}
{{- if .Values.leaderElection.enabled }}
{{- $flags = append $flags (printf "--lease-name=%s" .Values.leaderElection.leaseName) }}
{{- $flags = append $flags (printf "--lease-namespace=%s" .Release.Namespace) }}
{{- $flags = append $flags (printf "--lease-duration=%s" .Values.leaderElection.leaseDuration) }}
{{- else }}
{{- $flags = append $flags "--no-leader-election" }}
{{- end }}
{{- $flags = append $flags (printf "--require-policy=%t" .Values.requirePolicy) }}
{{- toYaml $flags }}
{{- end }}

{{/*
The container's arguments after the subcommand: the chart's flags except
those extraArgs names (--name or --name=value), then extraArgs. The
controller refuses a flag given twice, so extraArgs replaces a chart flag
instead.
*/}}
{{- define "instance-profile-controller.args" -}}
{{- $overridden := list }}
{{- range .Values.extraArgs }}
{{- if hasPrefix "--" (toString .) }}
{{- $overridden = append $overridden (first (splitList "=" (toString .))) }}
{{- end }}
{{- end }}
{{- $args := list }}
{{- range include "instance-profile-controller.flags" . | fromYamlArray }}
{{- if not (has (first (splitList "=" .)) $overridden) }}
{{- $args = append $args . }}
{{- end }}
{{- end }}
{{- range .Values.extraArgs }}
{{- $args = append $args (toString .) }}
{{- end }}
{{- toYaml $args }}
{{- end }}

{{/*
The container's environment as a YAML list: the chart's variables except
those extraEnv names, then extraEnv. A name given twice is invalid for
server-side apply, so extraEnv replaces a chart variable instead.
*/}}
{{- define "instance-profile-controller.env" -}}
{{- $env := list }}
{{- $env = append $env (dict "name" "POD_NAME" "valueFrom" (dict "fieldRef" (dict "fieldPath" "metadata.name"))) }}
{{- $env = append $env (dict "name" "POD_NAMESPACE" "valueFrom" (dict "fieldRef" (dict "fieldPath" "metadata.namespace"))) }}
{{- $endpoints := .Values.aws.endpoints | default dict }}
{{- range $service := list "iam" "ec2" "sts" "sqs" }}
{{- with get $endpoints $service }}
{{- $env = append $env (dict "name" (printf "AWS_ENDPOINT_URL_%s" (upper $service)) "value" .) }}
{{- end }}
{{- end }}
{{- $secret := .Values.aws.credentialsSecret | default dict }}
{{- with $secret.name }}
{{- $env = append $env (dict "name" "AWS_ACCESS_KEY_ID" "valueFrom" (dict "secretKeyRef" (dict "name" . "key" ($secret.accessKeyIdKey | default "AWS_ACCESS_KEY_ID")))) }}
{{- $env = append $env (dict "name" "AWS_SECRET_ACCESS_KEY" "valueFrom" (dict "secretKeyRef" (dict "name" . "key" ($secret.secretAccessKeyKey | default "AWS_SECRET_ACCESS_KEY")))) }}
{{- with $secret.sessionTokenKey }}
{{- $env = append $env (dict "name" "AWS_SESSION_TOKEN" "valueFrom" (dict "secretKeyRef" (dict "name" $secret.name "key" .))) }}
{{- end }}
{{- end }}
{{- $overridden := list }}
{{- range .Values.extraEnv }}
{{- $overridden = append $overridden .name }}
{{- end }}
{{- $kept := list }}
{{- range $env }}
{{- if not (has .name $overridden) }}
{{- $kept = append $kept . }}
{{- end }}
{{- end }}
{{- toYaml (concat $kept (.Values.extraEnv | default list)) }}
{{- end }}

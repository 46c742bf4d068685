{{/*
Chart name, cut to 63 characters (the DNS label limit Kubernetes puts on names and label values).
*/}}
{{- define "kubetune.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: release-chart, or just the release name when it already contains the chart name.
*/}}
{{- define "kubetune.fullname" -}}
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

{{/*
Chart label value: name-version.
*/}}
{{- define "kubetune.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object of the release, without a component.
*/}}
{{- define "kubetune.commonLabels" -}}
helm.sh/chart: {{ include "kubetune.chart" . }}
app.kubernetes.io/name: {{ include "kubetune.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kubetune
{{- end }}

{{/*
Labels of the operator's objects.
*/}}
{{- define "kubetune.labels" -}}
{{ include "kubetune.commonLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
Selector labels: immutable on a Deployment, so they never include the version.
*/}}
{{- define "kubetune.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubetune.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
ServiceAccount the operator runs as.
*/}}
{{- define "kubetune.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kubetune.fullname" .) .Values.serviceAccount.name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Operator image: a digest wins over a tag; the tag defaults to appVersion.
*/}}
{{- define "kubetune.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Default trainer image, handed to the operator (`--image`).
*/}}
{{- define "kubetune.trainerImage" -}}
{{- printf "%s:%s" .Values.trainer.image.repository (default .Chart.AppVersion .Values.trainer.image.tag) }}
{{- end }}

{{/*
Namespaces served in namespaced mode (a list, rendered as JSON): the release namespace by default.
*/}}
{{- define "kubetune.watchNamespaces" -}}
{{- if .Values.watch.namespaces }}
{{- .Values.watch.namespaces | uniq | toJson }}
{{- else }}
{{- list .Release.Namespace | toJson }}
{{- end }}
{{- end }}

{{/*
The API calls the operator makes inside a namespace it serves, as listed in
operator/kubetune_operator/rbac.py (JOB_RULES, plus NAMESPACED_PEERING in namespaced mode);
tests/chart/test_chart_rbac.py checks both directions, and tests/operator replays a whole
lifecycle to check that every rule is used. No wildcards, Secrets create-only (pods
reference the user's by name), pods read-only.
*/}}
{{- define "kubetune.namespacedRules" -}}
# The FineTuneJobs: kopf watches and patches them (finalizer, deletion progress); the
# operator deletes one after its TTL.
- apiGroups: ["kubetune.io"]
  resources: ["finetunejobs"]
  verbs: ["get", "list", "watch", "patch", "delete"]
- apiGroups: ["kubetune.io"]
  resources: ["finetunejobs/status"]
  verbs: ["patch"]
# Children are created with blockOwnerDeletion: true, which the admission plugin
# OwnerReferencesPermissionEnforcement allows only with update on the owner's finalizers.
- apiGroups: ["kubetune.io"]
  resources: ["finetunejobs/finalizers"]
  verbs: ["update"]
# The Indexed Job of each attempt, created idempotently, deleted on retry/suspend/deletion.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete"]
# The headless rendezvous Service (get: an existing one is used only if it is ours).
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "create", "delete"]
# The ConfigMap with the resolved spec; it also keeps the accepted spec (read with get).
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "create", "delete"]
# The job's own Secret with the credentials a spec's URL carried (user:password@), kept
# out of the ConfigMap; create only: the operator never reads a Secret.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["create"]
# Pods, read-only: read to classify failures and find rank 0; they go with their Job and
# the finalizer waits (listing) until they are gone.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# kopf posts core/v1 Events on every transition.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- if not .Values.watch.clusterWide }}
# kopf peering (HA) in namespaced mode: the KopfPeering of this namespace.
- apiGroups: ["kopf.dev"]
  resources: ["kopfpeerings"]
  verbs: ["list", "watch", "patch"]
{{- end }}
{{- end }}

{{/*
What kopf needs cluster-wide (rbac.py CRD_DISCOVERY, NAMESPACE_DISCOVERY): it discovers
resources through CRDs in both modes; serving a list of namespaces, it also watches which of
them exist, even when given plain names (a cluster-wide operator never does).
*/}}
{{- define "kubetune.discoveryRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- if not .Values.watch.clusterWide }}
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
{{- end }}

{{/*
kopf peering (HA) across the cluster, cluster-wide mode only (rbac.py CLUSTERWIDE_PEERING).
*/}}
{{- define "kubetune.clusterPeeringRules" -}}
- apiGroups: ["kopf.dev"]
  resources: ["clusterkopfpeerings"]
  verbs: ["list", "watch", "patch"]
{{- end }}

{{/*
fullname-suffix for secondary objects, with fullname cut so the whole stays within 63 characters.
Usage: include "kubetune.nameWith" (list . "metrics")
*/}}
{{- define "kubetune.nameWith" -}}
{{- $ctx := index . 0 }}
{{- $suffix := index . 1 }}
{{- $base := include "kubetune.fullname" $ctx | trunc (int (sub 62 (len $suffix))) | trimSuffix "-" }}
{{- printf "%s-%s" $base $suffix }}
{{- end }}

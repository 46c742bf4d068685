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
Default trainer image, handed to the operator (`--image`): a digest wins over a tag, as for the
operator image.
*/}}
{{- define "kubetune.trainerImage" -}}
{{- with .Values.trainer.image }}
{{- if .digest }}
{{- printf "%s@%s" .repository .digest }}
{{- else }}
{{- printf "%s:%s" .repository (default $.Chart.AppVersion .tag) }}
{{- end }}
{{- end }}
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
operator/kubetune_operator/rbac.py (JOB_RULES);
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
{{- if .Values.networkPolicy.enabled }}
# The NetworkPolicy of each FineTuneJob (--network-policy), created once, gone with its owner;
# get: an existing one with its name is used only if this FineTuneJob owns it.
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "create"]
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
Leader election (rbac.py LEADER_ELECTION): the Lease in the release namespace, read, created
once and renewed by PUT (optimistic concurrency on resourceVersion).
*/}}
{{- define "kubetune.leaderElectionRules" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "create", "update"]
{{- end }}

{{/*
Prometheus as a NetworkPolicyPeer (networkPolicy.prometheus): a null selector is left out.
*/}}
{{- define "kubetune.prometheusPeer" -}}
{{- $peer := dict }}
{{- range $key := list "namespaceSelector" "podSelector" }}
{{- $sel := index $.Values.networkPolicy.prometheus $key }}
{{- if not (kindIs "invalid" $sel) }}
{{- $_ := set $peer $key $sel }}
{{- end }}
{{- end }}
{{- toJson $peer }}
{{- end }}

{{/*
Who may reach the trainers' metrics port (JSON list of NetworkPolicyPeers, `--metrics-peer`):
the operator pods (they read rank 0's progress) and Prometheus.
*/}}
{{- define "kubetune.metricsPeers" -}}
{{- $operator := dict
  "namespaceSelector" (dict "matchLabels" (dict "kubernetes.io/metadata.name" .Release.Namespace))
  "podSelector" (dict "matchLabels" (include "kubetune.selectorLabels" . | fromYaml)) }}
{{- list $operator (include "kubetune.prometheusPeer" . | fromJson) | toJson }}
{{- end }}

{{/*
The leader Lease's name: leaderElection.leaseName, else the full name.
*/}}
{{- define "kubetune.leaseName" -}}
{{- default (include "kubetune.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
Refuse HA settings that cannot work: several replicas without leader election would all act
on every FineTuneJob (two Jobs per attempt); the timings must nest like client-go's.
*/}}
{{- define "kubetune.checkHighAvailability" -}}
{{- $le := .Values.leaderElection }}
{{- if gt (int .Values.replicaCount) 1 }}
{{- if not $le.enabled }}
{{- fail (printf "replicaCount %d needs leaderElection.enabled=true: without a leader every replica acts on every FineTuneJob. Set replicaCount=1 or enable leader election." (int .Values.replicaCount)) }}
{{- end }}
{{- if has "--standalone" .Values.operator.extraArgs }}
{{- fail (printf "replicaCount %d with --standalone in operator.extraArgs: every replica would act. Remove --standalone (leaderElection does HA) or set replicaCount=1." (int .Values.replicaCount)) }}
{{- end }}
{{- end }}
{{- if $le.enabled }}
{{- if not (and (gt (float64 $le.leaseDurationSeconds) (float64 $le.renewDeadlineSeconds)) (gt (float64 $le.renewDeadlineSeconds) (float64 $le.retryPeriodSeconds)) (gt (float64 $le.retryPeriodSeconds) 0.0)) }}
{{- fail "leaderElection needs leaseDurationSeconds > renewDeadlineSeconds > retryPeriodSeconds > 0 (a leader must give up before a standby takes over)." }}
{{- end }}
{{- end }}
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

{{/*
The trainer-defaults ConfigMap's name, and its YAML: the non-empty `trainerDefaults` values.
*/}}
{{- define "kubetune.trainerDefaultsName" -}}
{{- include "kubetune.nameWith" (list . "trainer-defaults") }}
{{- end }}

{{- define "kubetune.trainerDefaults" -}}
{{- $out := dict }}
{{- range $key, $value := .Values.trainerDefaults }}
{{- if $value }}
{{- $_ := set $out $key $value }}
{{- end }}
{{- end }}
{{- toYaml $out }}
{{- end }}

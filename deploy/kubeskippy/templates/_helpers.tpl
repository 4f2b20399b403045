{{- define "kubeskippy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kubeskippy.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "kubeskippy.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "kubeskippy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "kubeskippy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubeskippy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kubeskippy.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kubeskippy.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "kubeskippy.signingKeySecret" -}}
{{- default (printf "%s-signing-key" (include "kubeskippy.fullname" .)) .Values.signingKey.secretName -}}
{{- end -}}

{{- define "kubeskippy.leaseName" -}}
{{- default (printf "%s-leader" (include "kubeskippy.fullname" .)) .Values.leaderElection.leaseName -}}
{{- end -}}

{{/*
The environment variable the API key arrives in: the config's ai.apiKeyEnv if
set, else KUBESKIPPY_API_KEY. The rendered config always names it, so the chart
and the daemon agree whatever the daemon's built-in default is.
*/}}
{{- define "kubeskippy.apiKeyEnv" -}}
{{- $ai := .Values.config.ai | default dict -}}
{{- $ai.apiKeyEnv | default "KUBESKIPPY_API_KEY" -}}
{{- end -}}

{{/* values.yaml's config.ai.endpoint, which ollama.enabled replaces. */}}
{{- define "kubeskippy.defaultEndpoint" -}}
http://ollama.ollama.svc:11434
{{- end -}}

{{- define "kubeskippy.ollamaName" -}}
{{- printf "%s-ollama" (include "kubeskippy.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kubeskippy.ollamaSelectorLabels" -}}
app.kubernetes.io/name: ollama
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: model
{{- end -}}

{{- define "kubeskippy.ollamaLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "kubeskippy.ollamaSelectorLabels" . }}
app.kubernetes.io/version: {{ .Values.ollama.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "kubeskippy.ollamaEndpoint" -}}
{{- printf "http://%s.%s.svc:11434" (include "kubeskippy.ollamaName" .) .Release.Namespace -}}
{{- end -}}

{{/* The config file's content: .Values.config plus what the chart wires. */}}
{{- define "kubeskippy.configYaml" -}}
{{- $config := deepCopy (.Values.config | default dict) -}}
{{- $ai := get $config "ai" | default dict -}}
{{- if .Values.apiKey.existingSecret -}}
{{- $_ := set $ai "apiKeyEnv" (include "kubeskippy.apiKeyEnv" .) -}}
{{- end -}}
{{- if and .Values.ollama.enabled (eq (toString $ai.endpoint) (include "kubeskippy.defaultEndpoint" .)) -}}
{{- $_ := set $ai "endpoint" (include "kubeskippy.ollamaEndpoint" .) -}}
{{- end -}}
{{- if $ai -}}
{{- $_ := set $config "ai" $ai -}}
{{- end -}}
{{- with .Values.notifications.webhooks -}}
{{- $_ := set $config "notifications" (dict "webhooks" .) -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}

{{/* ai.apiKeySecretRef, or an empty dict. */}}
{{- define "kubeskippy.apiKeySecretRef" -}}
{{- $ai := .Values.config.ai | default dict -}}
{{- toYaml ($ai.apiKeySecretRef | default dict) -}}
{{- end -}}

{{/* Settings that would deploy something broken or unsafe stop the install here. */}}
{{- define "kubeskippy.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) -}}
{{- fail "replicaCount > 1 needs leaderElection.enabled: unelected replicas would all execute HealingActions" -}}
{{- end -}}
{{- $ai := .Values.config.ai | default dict -}}
{{- if $ai.apiKey -}}
{{- fail "config.ai.apiKey is refused (it would sit in a ConfigMap): use apiKey.existingSecret or config.ai.apiKeySecretRef" -}}
{{- end -}}
{{- if and .Values.apiKey.existingSecret $ai.apiKeySecretRef -}}
{{- fail "set either apiKey.existingSecret or config.ai.apiKeySecretRef, not both" -}}
{{- end -}}
{{- with $ai.apiKeySecretRef -}}
{{- if not (and .name .key) -}}
{{- fail "config.ai.apiKeySecretRef needs name and key" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.serviceMonitor.enabled (not .Values.service.enabled) -}}
{{- fail "serviceMonitor.enabled needs service.enabled: the ServiceMonitor scrapes through that Service" -}}
{{- end -}}
{{- if and .Values.networkPolicy.enabled (not .Values.networkPolicy.apiServer.cidrs) -}}
{{- fail "networkPolicy.apiServer.cidrs is empty: the daemon could not reach the API server (list its endpoint addresses)" -}}
{{- end -}}
{{- if and .Values.ollama.pull.enabled (not .Values.ollama.enabled) -}}
{{- fail "ollama.pull.enabled needs ollama.enabled: the Job pulls into the chart's Ollama" -}}
{{- end -}}
{{- $names := dict -}}
{{- range .Values.notifications.webhooks -}}
{{- if hasKey $names .name -}}
{{- fail (printf "notifications.webhooks: the name %q is used twice" .name) -}}
{{- end -}}
{{- $_ := set $names .name true -}}
{{- end -}}
{{- end -}}

{{/* The Secrets notifications.webhooks read their URLs from, each once, as a YAML list. */}}
{{- define "kubeskippy.webhookSecrets" -}}
{{- $names := list -}}
{{- range .Values.notifications.webhooks -}}
{{- $names = append $names .urlSecret.name -}}
{{- end -}}
{{- toYaml (uniq $names) -}}
{{- end -}}

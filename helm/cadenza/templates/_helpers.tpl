{{/* Names and labels. */}}
{{- define "cadenza.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "cadenza.fullname" -}}
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

{{- define "cadenza.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "cadenza.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cadenza
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" $ "component" "worker") */}}
{{- define "cadenza.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cadenza.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "cadenza.componentLabels" -}}
{{ include "cadenza.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "cadenza.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "cadenza.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "cadenza.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "cadenza.secretName" -}}
{{- default (printf "%s-secrets" (include "cadenza.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "cadenza.configName" -}}
{{- printf "%s-config" (include "cadenza.fullname" .) -}}
{{- end -}}

{{- define "cadenza.workerGroup" -}}
{{- printf "%sworkers" .Values.kafka.topicPrefix -}}
{{- end -}}

{{- define "cadenza.ragSearchUrl" -}}
{{- printf "http://%s-rag-ingest:%d" (include "cadenza.fullname" .) (int .Values.ragIngest.searchPort) -}}
{{- end -}}

{{/* Non-secret settings, shared by the ConfigMap and the migration hook (which runs before
     the ConfigMap exists on a first install). */}}
{{- define "cadenza.config" -}}
CADENZA_LOG_LEVEL: {{ .Values.logLevel | quote }}
CADENZA_BUS_BACKEND: "kafka"
CADENZA_BUS_BOOTSTRAP_SERVERS: {{ .Values.kafka.bootstrapServers | quote }}
CADENZA_BUS_TOPIC_PREFIX: {{ .Values.kafka.topicPrefix | quote }}
CADENZA_BUS_PARTITIONS: {{ .Values.kafka.partitions | quote }}
CADENZA_BUS_REPLICATION_FACTOR: {{ .Values.kafka.replicationFactor | quote }}
{{- with .Values.postgresql.schema }}
CADENZA_DATABASE_SCHEMA: {{ . | quote }}
{{- end }}
CADENZA_REDIS_URL: {{ .Values.redis.url | quote }}
CADENZA_REDIS_KEY_PREFIX: {{ .Values.redis.keyPrefix | quote }}
CADENZA_OBJECT_STORE: "s3"
CADENZA_S3_ENDPOINT: {{ .Values.s3.endpoint | quote }}
CADENZA_S3_SECURE: {{ .Values.s3.secure | quote }}
CADENZA_S3_BUCKET: {{ .Values.s3.bucket | quote }}
CADENZA_WORKER_CONSUMER_GROUP: {{ include "cadenza.workerGroup" . | quote }}
CADENZA_ORCHESTRATOR_GROUP: {{ printf "%sorchestrator" .Values.kafka.topicPrefix | quote }}
{{- if .Values.retrieval.qdrantUrl }}
CADENZA_RETRIEVAL_QDRANT_URL: {{ .Values.retrieval.qdrantUrl | quote }}
{{- end }}
{{- if .Values.ragIngest.enabled }}
CADENZA_RETRIEVAL_SEARCH_URL: {{ include "cadenza.ragSearchUrl" . | quote }}
{{- end }}
{{- if .Values.telemetry.otlpEndpoint }}
OTEL_EXPORTER_OTLP_ENDPOINT: {{ .Values.telemetry.otlpEndpoint | quote }}
OTEL_TRACES_EXPORTER: "otlp"
{{- else }}
OTEL_TRACES_EXPORTER: "none"
{{- end }}
{{- end -}}

{{/* envFrom + env of every Cadenza container. */}}
{{- define "cadenza.envFrom" -}}
- configMapRef:
    name: {{ include "cadenza.configName" . }}
- secretRef:
    name: {{ include "cadenza.secretName" . }}
{{- with .Values.extraEnvFrom }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Pod-level settings shared by every pod: (dict "ctx" $ "component" "worker"); with
     "hook" true no service account is named (a pre-install hook runs before it exists). */}}
{{- define "cadenza.podSpec" -}}
{{- $ := .ctx -}}
{{- if not .hook }}
serviceAccountName: {{ include "cadenza.serviceAccountName" $ }}
{{- end }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml $.Values.podSecurityContext | nindent 2 }}
{{- with $.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $.Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $.Values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The container fields every service shares:
     (dict "ctx" $ "command" "worker" "env" (list (dict "name" "X" "value" "1"))) */}}
{{- define "cadenza.container" -}}
{{- $ := .ctx -}}
image: {{ include "cadenza.image" $ }}
imagePullPolicy: {{ $.Values.image.pullPolicy }}
args: [{{ .command | quote }}]
securityContext:
  {{- toYaml $.Values.securityContext | nindent 2 }}
envFrom:
  {{- include "cadenza.envFrom" $ | nindent 2 }}
{{- $env := concat (default (list) .env) $.Values.extraEnv }}
{{- with $env }}
env:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Writable folders under a read-only root file system. */}}
{{- define "cadenza.scratchMounts" -}}
- name: tmp
  mountPath: /tmp
- name: home
  mountPath: /home/cadenza
{{- end -}}
{{- define "cadenza.scratchVolumes" -}}
- name: tmp
  emptyDir: {}
- name: home
  emptyDir: {}
{{- end -}}

{{- define "cadenza.podAnnotations" -}}
checksum/config: {{ include "cadenza.config" . | sha256sum }}
{{- if not .Values.secrets.existingSecret }}
checksum/secret: {{ printf "%s%s%s" .Values.postgresql.url .Values.s3.accessKey .Values.s3.secretKey | sha256sum }}
{{- end }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

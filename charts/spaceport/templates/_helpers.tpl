{{/* Names, labels and the environment every Spaceport process shares. */}}

{{- define "spaceport.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "spaceport.fullname" -}}
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

{{/* Labels a component's pods are selected by: name, instance, component. */}}
{{- define "spaceport.selectorLabels" -}}
app.kubernetes.io/name: {{ include "spaceport.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "spaceport.labels" -}}
{{ include "spaceport.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: spaceport
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "spaceport.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "spaceport.instance" -}}
{{- default (include "spaceport.fullname" .) .Values.instance -}}
{{- end -}}

{{- define "spaceport.controllerServiceAccount" -}}
{{- default (printf "%s-controller" (include "spaceport.fullname" .)) .Values.serviceAccount.controller -}}
{{- end -}}

{{- define "spaceport.apiServiceAccount" -}}
{{- default (printf "%s-api" (include "spaceport.fullname" .)) .Values.serviceAccount.api -}}
{{- end -}}

{{- define "spaceport.claimName" -}}
{{- default (printf "%s-home" (include "spaceport.fullname" .)) .Values.persistence.existingClaim -}}
{{- end -}}

{{/* The Secret and key holding SPACEPORT_DATABASE_URL. */}}
{{- define "spaceport.databaseSecret" -}}
{{- if and (not .Values.postgresql.enabled) .Values.postgresql.external.existingSecret -}}
{{- .Values.postgresql.external.existingSecret -}}
{{- else -}}
{{- printf "%s-urls" (include "spaceport.fullname" .) -}}
{{- end -}}
{{- end -}}
{{- define "spaceport.databaseSecretKey" -}}
{{- if and (not .Values.postgresql.enabled) .Values.postgresql.external.existingSecret -}}
{{- .Values.postgresql.external.existingSecretKey -}}
{{- else -}}
database-url
{{- end -}}
{{- end -}}

{{/* The Secret and key holding SPACEPORT_BROKER_URL. */}}
{{- define "spaceport.brokerSecret" -}}
{{- if and (not .Values.redis.enabled) .Values.redis.external.existingSecret -}}
{{- .Values.redis.external.existingSecret -}}
{{- else -}}
{{- printf "%s-urls" (include "spaceport.fullname" .) -}}
{{- end -}}
{{- end -}}
{{- define "spaceport.brokerSecretKey" -}}
{{- if and (not .Values.redis.enabled) .Values.redis.external.existingSecret -}}
{{- .Values.redis.external.existingSecretKey -}}
{{- else -}}
broker-url
{{- end -}}
{{- end -}}

{{/* The bundled PostgreSQL's password: the value, else the one already in the cluster
(kept across upgrades), else a new random one. */}}
{{- define "spaceport.postgresPassword" -}}
{{- if .Values.postgresql.auth.password -}}
{{- .Values.postgresql.auth.password -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (printf "%s-postgresql" (include "spaceport.fullname" .)) -}}
{{- if and $existing $existing.data (index $existing.data "password") -}}
{{- index $existing.data "password" | b64dec -}}
{{- else -}}
{{- /* One random password per render, shared by every template that asks. */ -}}
{{- if not (hasKey .Values.postgresql.auth "generatedPassword") -}}
{{- $_ := set .Values.postgresql.auth "generatedPassword" (randAlphaNum 32) -}}
{{- end -}}
{{- .Values.postgresql.auth.generatedPassword -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Checks that stop a broken install at `helm install`/`helm template`. */}}
{{- define "spaceport.validate" -}}
{{- if and (not .Values.postgresql.enabled) (not .Values.postgresql.external.url) (not .Values.postgresql.external.existingSecret) -}}
{{- fail "postgresql.enabled=false needs postgresql.external.url or postgresql.external.existingSecret (SQLite cannot be shared between pods)" -}}
{{- end -}}
{{- if and (not .Values.redis.enabled) (not .Values.redis.external.url) (not .Values.redis.external.existingSecret) -}}
{{- fail "redis.enabled=false needs redis.external.url or redis.external.existingSecret" -}}
{{- end -}}
{{- if not (has .Values.worker.engine.mode (list "dind" "hostSocket" "external")) -}}
{{- fail (printf "worker.engine.mode must be dind, hostSocket or external, not %q" .Values.worker.engine.mode) -}}
{{- end -}}
{{- if and (eq .Values.worker.engine.mode "external") (not .Values.worker.engine.host) -}}
{{- fail "worker.engine.mode=external needs worker.engine.host (DOCKER_HOST of the engine)" -}}
{{- end -}}
{{- if eq .Values.spaces.namespace .Release.Namespace -}}
{{- fail "spaces.namespace must differ from the release's namespace: Spaces stay out of the control plane's" -}}
{{- end -}}
{{- end -}}

{{/* The environment of every Spaceport process. */}}
{{- define "spaceport.env" -}}
- name: SPACEPORT_HOME
  value: {{ .Values.home | quote }}
- name: SPACEPORT_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "spaceport.databaseSecret" . }}
      key: {{ include "spaceport.databaseSecretKey" . }}
- name: SPACEPORT_BROKER_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "spaceport.brokerSecret" . }}
      key: {{ include "spaceport.brokerSecretKey" . }}
- name: SPACEPORT_HARDWARE_OVERRIDES
  valueFrom:
    configMapKeyRef:
      name: {{ include "spaceport.fullname" . }}-hardware
      key: overrides.json
{{- if .Values.hardware.catalogue }}
- name: SPACEPORT_HARDWARE_CATALOGUE
  value: /etc/spaceport/hardware/catalogue.yaml
{{- end }}
{{- if .Values.registry.url }}
- name: SPACEPORT_REGISTRY
  value: {{ .Values.registry.url | quote }}
{{- end }}
{{- if .Values.registry.username }}
- name: SPACEPORT_REGISTRY_USERNAME
  value: {{ .Values.registry.username | quote }}
{{- end }}
{{- if or .Values.registry.password .Values.registry.existingSecret }}
- name: SPACEPORT_REGISTRY_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ default (printf "%s-registry" (include "spaceport.fullname" .)) .Values.registry.existingSecret }}
      key: {{ ternary .Values.registry.existingSecretPasswordKey "password" (not (empty .Values.registry.existingSecret)) }}
{{- end }}
{{- range $name, $value := .Values.extraEnv }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- with .Values.extraEnvVars }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "spaceport.configChecksum" -}}
checksum/settings: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- end -}}

{{/* The shared home volume. */}}
{{- define "spaceport.homeVolume" -}}
- name: home
{{- if .Values.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ include "spaceport.claimName" . }}
{{- else }}
  emptyDir: {}
{{- end }}
{{- end -}}

{{/* Parts of every Spaceport pod: security, volumes, the settings. */}}

{{- define "spaceport.podCommon" -}}
{{- with .root.Values.imagePullSecrets -}}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{ end -}}
securityContext:
  {{- toYaml (merge (default (dict) .security) .root.Values.podSecurityContext) | nindent 2 }}
{{- end -}}

{{/* Spread a component's replicas over nodes unless the values give an affinity. */}}
{{- define "spaceport.affinity" -}}
{{- if .affinity }}
affinity:
  {{- toYaml .affinity | nindent 2 }}
{{- else }}
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- include "spaceport.selectorLabels" (dict "root" .root "component" .component) | nindent 14 }}
{{- end }}
{{- end -}}

{{- define "spaceport.containerCommon" -}}
image: {{ include "spaceport.image" .root }}
imagePullPolicy: {{ .root.Values.image.pullPolicy }}
securityContext:
  {{- toYaml .root.Values.containerSecurityContext | nindent 2 }}
envFrom:
  - configMapRef:
      name: {{ include "spaceport.fullname" .root }}-settings
env:
  {{- include "spaceport.env" .root | nindent 2 }}
  {{- with .env }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
volumeMounts:
  - name: home
    mountPath: {{ .root.Values.home }}
  - name: hardware
    mountPath: /etc/spaceport/hardware
    readOnly: true
  - name: tmp
    mountPath: /tmp
  {{- with .mounts }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}

{{- define "spaceport.volumes" -}}
{{ include "spaceport.homeVolume" .root }}
- name: hardware
  configMap:
    name: {{ include "spaceport.fullname" .root }}-hardware
- name: tmp
  emptyDir: {}
{{- end -}}

{{/* The release's full name, at most 63 characters (a DNS label). */}}
{{- define "inferfleet.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "inferfleet.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "inferfleet.labels" -}}
{{ include "inferfleet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "inferfleet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "inferfleet.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Namespaces the operator serves in namespaced mode (JSON list; default: the release's). */}}
{{- define "inferfleet.watchNamespaces" -}}
{{- if .Values.watchNamespaces -}}
{{- toJson .Values.watchNamespaces -}}
{{- else -}}
{{- toJson (list .Release.Namespace) -}}
{{- end -}}
{{- end -}}

{{- define "inferfleet.ha" -}}
{{- if gt (int .Values.replicaCount) 1 }}true{{ end -}}
{{- end -}}

{{/*
The operator pod, shared by the Deployment (one replica) and the StatefulSet (peering).
Kopf's command line: the operator file the image ships, its health endpoint, what to watch,
and standalone or peering.
*/}}
{{/* Host patterns for a fleet's prometheusURL: allowedHosts, then each allowed namespace's
Service names. */}}
{{- define "inferfleet.prometheusAllowedHosts" -}}
{{- $hosts := list -}}
{{- range .Values.prometheus.allowedHosts }}{{ $hosts = append $hosts . }}{{ end -}}
{{- range .Values.prometheus.allowedNamespaces -}}
{{- $hosts = append $hosts (printf "*.%s.svc" .) -}}
{{- $hosts = append $hosts (printf "*.%s.svc.cluster.local" .) -}}
{{- end -}}
{{- join "," $hosts -}}
{{- end -}}

{{- define "inferfleet.podTemplate" -}}
metadata:
  labels:
    {{- include "inferfleet.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  serviceAccountName: {{ include "inferfleet.serviceAccountName" . }}
  automountServiceAccountToken: true
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    runAsGroup: 65532
    fsGroup: 65532
    seccompProfile:
      type: RuntimeDefault
  # Kopf removes its peering entry and finishes handlers on SIGTERM.
  terminationGracePeriodSeconds: 30
  containers:
    - name: operator
      image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - run
        - /app/operator/main.py
        - --liveness=http://0.0.0.0:{{ .Values.healthPort }}/healthz
        {{- if .Values.namespaced }}
        {{- range (include "inferfleet.watchNamespaces" . | fromJsonArray) }}
        - --namespace={{ . }}
        {{- end }}
        {{- else }}
        - --all-namespaces
        {{- end }}
        {{- if include "inferfleet.ha" . }}
        - --peering={{ .Values.peering.name }}
        - --priority=$(POD_INDEX)
        {{- else }}
        - --standalone
        {{- end }}
        {{- if eq .Values.logLevel "debug" }}
        - --verbose
        {{- else if eq .Values.logLevel "quiet" }}
        - --quiet
        {{- end }}
      env:
        - name: INFERFLEET_PROMETHEUS_URL
          value: {{ .Values.prometheus.url | quote }}
        - name: INFERFLEET_PROMETHEUS_ALLOWED_HOSTS
          value: {{ include "inferfleet.prometheusAllowedHosts" . | quote }}
        - name: INFERFLEET_METRICS_PORT
          value: {{ .Values.metrics.port | quote }}
        - name: INFERFLEET_CONCURRENT_PASSES
          value: {{ .Values.concurrentPasses | quote }}
        # What the chart's RBAC grants (rbac.*), so the operator watches no pods and reads no
        # Secret it may not (a watch without the grant would retry its 403 forever).
        - name: INFERFLEET_POD_ACCESS
          value: {{ .Values.rbac.podAccess | toString | quote }}
        - name: INFERFLEET_READABLE_SECRETS
          value: {{ join "," .Values.rbac.hubTokenSecrets | quote }}
        - name: INFERFLEET_ALLOW_PRIVILEGED_PODS
          value: {{ .Values.vllmPods.allowPrivileged | toString | quote }}
        {{- with .Values.hub }}
        # huggingface_hub's files (config.json, shard indexes; its own HF_HOME state) live on
        # the hub-cache emptyDir: the root filesystem is read-only. Pruned to half its size.
        - name: HF_HOME
          value: /var/cache/inferfleet-hub
        - name: INFERFLEET_HUB_CACHE_DIR
          value: /var/cache/inferfleet-hub/hub
        - name: INFERFLEET_HUB_CACHE_MAX_MIB
          value: {{ div (.cache.sizeLimitMiB | default 64 | int) 2 | quote }}
        - name: HF_HUB_DISABLE_TELEMETRY
          value: "1"
        {{- if .endpoint }}
        - name: HF_ENDPOINT
          value: {{ .endpoint | quote }}
        {{- end }}
        {{- if .offline }}
        - name: HF_HUB_OFFLINE
          value: "1"
        {{- end }}
        - name: INFERFLEET_HUB_ALLOWED_HOSTS
          value: {{ join "," (.allowedHosts | default list) | quote }}
        {{- if and .tokenSecret .tokenSecret.name }}
        - name: HF_TOKEN
          valueFrom:
            secretKeyRef:
              name: {{ .tokenSecret.name | quote }}
              key: {{ .tokenSecret.key | default "token" | quote }}
        {{- end }}
        {{- end }}
        # Kopf's peer identity: the pod name reads better in the peering status than user@host.
        - name: POD_ID
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        {{- if include "inferfleet.ha" . }}
        - name: POD_INDEX
          valueFrom:
            fieldRef:
              fieldPath: metadata.labels['apps.kubernetes.io/pod-index']
        {{- end }}
      ports:
        - name: health
          containerPort: {{ .Values.healthPort }}
          protocol: TCP
        - name: metrics
          containerPort: {{ .Values.metrics.port }}
          protocol: TCP
      livenessProbe:
        httpGet:
          path: /healthz
          port: health
        initialDelaySeconds: 10
        periodSeconds: 20
        timeoutSeconds: 5
        failureThreshold: 3
      readinessProbe:
        httpGet:
          path: /healthz
          port: health
        periodSeconds: 10
        timeoutSeconds: 5
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        readOnlyRootFilesystem: true
        allowPrivilegeEscalation: false
        capabilities:
          drop: [ALL]
        seccompProfile:
          type: RuntimeDefault
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        - name: hub-cache
          mountPath: /var/cache/inferfleet-hub
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: 64Mi
    - name: hub-cache
      emptyDir:
        sizeLimit: {{ .Values.hub.cache.sizeLimitMiB | default 64 | int }}Mi
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

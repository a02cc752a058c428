{{/*
Names and labels. Every resource takes its name and labels from here, so that a rename happens in one place.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "conveyor.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The prefix of every resource name: fullnameOverride, else <release>-<chart> (just <release> when it already holds the chart name). */}}
{{- define "conveyor.fullname" -}}
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

{{/* The name of one component's resources: <fullname>-<component>. Call with (dict "root" $ "component" "api"). */}}
{{- define "conveyor.componentName" -}}
{{- printf "%s-%s" (include "conveyor.fullname" .root | trunc 50 | trimSuffix "-") .component }}
{{- end }}

{{- define "conveyor.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every resource carries. */}}
{{- define "conveyor.labels" -}}
helm.sh/chart: {{ include "conveyor.chart" . }}
{{ include "conveyor.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: conveyor
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "conveyor.selectorLabels" -}}
app.kubernetes.io/name: {{ include "conveyor.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one component's resources. Call with (dict "root" $ "component" "api"). */}}
{{- define "conveyor.componentLabels" -}}
{{ include "conveyor.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Selector labels of one component's pods. Call with (dict "root" $ "component" "api"). */}}
{{- define "conveyor.componentSelectorLabels" -}}
{{ include "conveyor.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The ServiceAccount one component runs as. Call with (dict "root" $ "component" "api"). */}}
{{- define "conveyor.serviceAccountName" -}}
{{- $values := index .root.Values .component }}
{{- if $values.serviceAccount.create }}
{{- default (include "conveyor.componentName" .) $values.serviceAccount.name }}
{{- else }}
{{- default "default" $values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* One component's image reference. Call with (dict "root" $ "component" "api"). */}}
{{- define "conveyor.image" -}}
{{- $image := .root.Values.image }}
{{- $repository := (index .root.Values .component).image.repository }}
{{- $tag := default .root.Chart.AppVersion $image.tag }}
{{- if $image.registry }}
{{- printf "%s/%s:%s" (trimSuffix "/" $image.registry) $repository $tag }}
{{- else }}
{{- printf "%s:%s" $repository $tag }}
{{- end }}
{{- end }}

{{- define "conveyor.leaseName" -}}
{{- default (include "conveyor.componentName" (dict "root" . "component" "controller")) .Values.controller.leaseName }}
{{- end }}

{{/*
Connections. DATABASE_URL and AMQP_URL come from a Secret: the user's existingSecret, else the chart's own,
filled from connections.* or from the development PostgreSQL/RabbitMQ of this release.
*/}}

{{- define "conveyor.secretName" -}}
{{- default (include "conveyor.fullname" .) .Values.connections.existingSecret }}
{{- end }}

{{- define "conveyor.postgresql.host" -}}
{{- include "conveyor.componentName" (dict "root" . "component" "postgresql") }}
{{- end }}

{{- define "conveyor.rabbitmq.host" -}}
{{- include "conveyor.componentName" (dict "root" . "component" "rabbitmq") }}
{{- end }}

{{- define "conveyor.databaseUrl" -}}
{{- if .Values.connections.databaseUrl }}
{{- .Values.connections.databaseUrl }}
{{- else }}
{{- $auth := .Values.postgresql.auth }}
{{- printf "postgres://%s:%s@%s:5432/%s" $auth.username $auth.password (include "conveyor.postgresql.host" .) $auth.database }}
{{- end }}
{{- end }}

{{- define "conveyor.amqpUrl" -}}
{{- if .Values.connections.amqpUrl }}
{{- .Values.connections.amqpUrl }}
{{- else }}
{{- $auth := .Values.rabbitmq.auth }}
{{- printf "amqp://%s:%s@%s:5672" $auth.username $auth.password (include "conveyor.rabbitmq.host" .) }}
{{- end }}
{{- end }}

{{/* DATABASE_URL and AMQP_URL, from the Secret, for a container's env. */}}
{{- define "conveyor.connectionEnv" -}}
{{- $secret := include "conveyor.secretName" . -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ ternary .Values.connections.databaseUrlKey "DATABASE_URL" (ne .Values.connections.existingSecret "") }}
- name: AMQP_URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ ternary .Values.connections.amqpUrlKey "AMQP_URL" (ne .Values.connections.existingSecret "") }}
{{- end }}

{{/*
API keys. The bootstrap key lives in a Secret: the user's auth.bootstrapKey.existingSecret, else the chart's
own (bootstrap-key-secret.yaml), whose key is generated once and then kept.
*/}}

{{- define "conveyor.bootstrapKey.secretName" -}}
{{- default (include "conveyor.componentName" (dict "root" . "component" "bootstrap-key")) .Values.auth.bootstrapKey.existingSecret }}
{{- end }}

{{- define "conveyor.bootstrapKey.secretKey" -}}
{{- ternary .Values.auth.bootstrapKey.existingSecretKey "AUTH_BOOTSTRAP_KEY" (ne .Values.auth.bootstrapKey.existingSecret "") }}
{{- end }}

{{/* The bootstrap key's tenant: auth.bootstrapTenant, else the release namespace (the tenant of the controller's Task resources). */}}
{{- define "conveyor.bootstrapTenant" -}}
{{- default .Release.Namespace .Values.auth.bootstrapTenant }}
{{- end }}

{{/* The Secret and key of the API key Prometheus sends: metrics.serviceMonitor.apiKey, else the bootstrap key. */}}
{{- define "conveyor.metricsKey.secretName" -}}
{{- default (include "conveyor.bootstrapKey.secretName" .) .Values.metrics.serviceMonitor.apiKey.existingSecret }}
{{- end }}

{{- define "conveyor.metricsKey.secretKey" -}}
{{- if .Values.metrics.serviceMonitor.apiKey.existingSecret }}
{{- .Values.metrics.serviceMonitor.apiKey.existingSecretKey }}
{{- else }}
{{- include "conveyor.bootstrapKey.secretKey" . }}
{{- end }}
{{- end }}

{{/* AUTH_BOOTSTRAP_KEY from its Secret, for a container's env. */}}
{{- define "conveyor.bootstrapKeyEnv" -}}
valueFrom:
  secretKeyRef:
    name: {{ include "conveyor.bootstrapKey.secretName" . }}
    key: {{ include "conveyor.bootstrapKey.secretKey" . }}
{{- end }}

{{/* Pod annotations that roll the pods when their configuration changes. */}}
{{- define "conveyor.configChecksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}

{{/* A PodDisruptionBudget's budget: minAvailable when set, else maxUnavailable. Call with the component's podDisruptionBudget values. */}}
{{- define "conveyor.pdbBudget" -}}
{{- if not (kindIs "invalid" .minAvailable) -}}
minAvailable: {{ .minAvailable }}
{{- else -}}
maxUnavailable: {{ .maxUnavailable }}
{{- end -}}
{{- end }}

{{/*
The worker's grace period: the worker forces itself out SHUTDOWN_TIMEOUT_MS + 10 s after SIGTERM, so the
kubelet must wait longer than that before its SIGKILL, or tasks still being handed back would be cut off.
*/}}
{{- define "conveyor.worker.minimumGraceSeconds" -}}
{{- add (div (add (int .Values.worker.shutdownTimeoutMs) 999) 1000) 10 }}
{{- end }}

{{- define "conveyor.worker.graceSeconds" -}}
{{- if kindIs "invalid" .Values.worker.terminationGracePeriodSeconds }}
{{- add (include "conveyor.worker.minimumGraceSeconds" . | int) 5 }}
{{- else }}
{{- .Values.worker.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/* The grace period of the api and controller: their own deadline is SHUTDOWN_TIMEOUT_MS + 5 s. */}}
{{- define "conveyor.graceSeconds" -}}
{{- add (div (add (int .shutdownTimeoutMs) 999) 1000) 15 }}
{{- end }}

{{/* The volume and mount that give a read-only container a writable /tmp. */}}
{{- define "conveyor.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end }}

{{- define "conveyor.tmpVolumeMount" -}}
- name: tmp
  mountPath: /tmp
{{- end }}

{{/*
Bad combinations stop the render with what to set. Included once, from configmap.yaml, which every
install renders.
*/}}
{{- define "conveyor.validate" -}}
{{- $c := .Values.connections }}
{{- if $c.existingSecret }}
{{- if or $c.databaseUrl $c.amqpUrl }}
{{- fail "conveyor: connections.existingSecret is set together with connections.databaseUrl/amqpUrl; keep the URLs in the Secret and unset them" }}
{{- end }}
{{- if or .Values.postgresql.enabled .Values.rabbitmq.enabled }}
{{- fail "conveyor: connections.existingSecret cannot be combined with postgresql.enabled or rabbitmq.enabled (the development databases write their own URLs); unset one or the other" }}
{{- end }}
{{- else }}
{{- if and $c.databaseUrl .Values.postgresql.enabled }}
{{- fail "conveyor: both connections.databaseUrl and postgresql.enabled are set; choose the external database or the development one" }}
{{- end }}
{{- if and $c.amqpUrl .Values.rabbitmq.enabled }}
{{- fail "conveyor: both connections.amqpUrl and rabbitmq.enabled are set; choose the external broker or the development one" }}
{{- end }}
{{- if not (or $c.databaseUrl .Values.postgresql.enabled) }}
{{- fail "conveyor: no PostgreSQL configured. Set connections.databaseUrl, or connections.existingSecret (a Secret with DATABASE_URL and AMQP_URL), or postgresql.enabled=true for development" }}
{{- end }}
{{- if not (or $c.amqpUrl .Values.rabbitmq.enabled) }}
{{- fail "conveyor: no RabbitMQ configured. Set connections.amqpUrl, or connections.existingSecret (a Secret with DATABASE_URL and AMQP_URL), or rabbitmq.enabled=true for development" }}
{{- end }}
{{- end }}
{{- if and .Values.worker.pool.enabled (not .Values.controller.enabled) }}
{{- fail "conveyor: worker.pool.enabled needs controller.enabled=true (the controller scales the pool); or set worker.pool.enabled=false and worker.replicas" }}
{{- end }}
{{- if gt (int .Values.worker.pool.minReplicas) (int .Values.worker.pool.maxReplicas) }}
{{- fail (printf "conveyor: worker.pool.minReplicas (%v) exceeds worker.pool.maxReplicas (%v)" .Values.worker.pool.minReplicas .Values.worker.pool.maxReplicas) }}
{{- end }}
{{- if not (kindIs "invalid" .Values.worker.terminationGracePeriodSeconds) }}
{{- $minimum := include "conveyor.worker.minimumGraceSeconds" . | int }}
{{- if le (int .Values.worker.terminationGracePeriodSeconds) $minimum }}
{{- fail (printf "conveyor: worker.terminationGracePeriodSeconds (%v) must exceed worker.shutdownTimeoutMs + 10 s (%d s), or running tasks are killed before they are handed back; raise it or leave it empty" .Values.worker.terminationGracePeriodSeconds $minimum) }}
{{- end }}
{{- end }}
{{- if and .Values.api.ingress.enabled (empty .Values.api.ingress.hosts) }}
{{- fail "conveyor: api.ingress.enabled needs at least one entry in api.ingress.hosts" }}
{{- end }}
{{- $exposed := or .Values.api.ingress.enabled (has .Values.api.service.type (list "NodePort" "LoadBalancer")) }}
{{- if and .Values.api.publicMetrics $exposed }}
{{- fail "conveyor: api.publicMetrics=true would publish /metrics through the Ingress, NodePort or LoadBalancer; keep api.publicMetrics=false (the ServiceMonitor sends an API key, see metrics.serviceMonitor.apiKey) or keep the API Service internal (api.ingress.enabled=false, api.service.type=ClusterIP)" }}
{{- end }}
{{- if gt (int .Values.api.limits.headersTimeoutMs) (int .Values.api.limits.requestTimeoutMs) }}
{{- fail (printf "conveyor: api.limits.headersTimeoutMs (%v) exceeds api.limits.requestTimeoutMs (%v); Node refuses a headers timeout longer than the request timeout" .Values.api.limits.headersTimeoutMs .Values.api.limits.requestTimeoutMs) }}
{{- end }}
{{- if and .Values.networkPolicy.enabled (has .Values.api.service.type (list "NodePort" "LoadBalancer")) (empty .Values.networkPolicy.api.extraFrom) }}
{{- fail (printf "conveyor: api.service.type=%s with networkPolicy.enabled lets only the ingress controller reach the API, so the %s would answer nobody; list its clients in networkPolicy.api.extraFrom (for example [{ipBlock: {cidr: 0.0.0.0/0}}]) or set networkPolicy.enabled=false" .Values.api.service.type .Values.api.service.type) }}
{{- end }}
{{- end }}

{{/*
NetworkPolicies. Every Conveyor pod (api, worker, controller) may resolve names and reach PostgreSQL and
RabbitMQ, and nothing else unless a rule below or networkPolicy.<component>.extraEgress adds it.
*/}}

{{/* The release's api, worker and controller pods, as a NetworkPolicyPeer. */}}
{{- define "conveyor.networkPolicy.conveyorPeer" -}}
- podSelector:
    matchLabels:
      {{- include "conveyor.selectorLabels" . | nindent 6 }}
    matchExpressions:
      - key: app.kubernetes.io/component
        operator: In
        values: [api, worker, controller]
{{- end }}

{{/* A namespaceSelector/podSelector pair of values (ingressController, prometheus) as a NetworkPolicyPeer. */}}
{{- define "conveyor.networkPolicy.selectorPeer" -}}
- namespaceSelector:
    {{- toYaml (default dict .namespaceSelector) | nindent 4 }}
  podSelector:
    {{- toYaml (default dict .podSelector) | nindent 4 }}
{{- end }}

{{/* An ingress rule letting Prometheus reach `ports`; nothing when `ports` is empty (no monitor scrapes the pod). Call with (dict "root" $ "ports" (list "metrics")). */}}
{{- define "conveyor.networkPolicy.prometheusIngress" -}}
{{- if .ports -}}
- from:
    {{- include "conveyor.networkPolicy.selectorPeer" .root.Values.networkPolicy.prometheus | nindent 4 }}
  ports:
    {{- range .ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
{{- end }}
{{- end }}

{{/*
An egress rule to PostgreSQL or RabbitMQ: the release's own pod on its port when it runs one, else
networkPolicy.<service>.ports at networkPolicy.<service>.to (any address when empty).
*/}}
{{- define "conveyor.networkPolicy.serviceEgress" -}}
{{- if .inRelease -}}
- to:
    - podSelector:
        matchLabels:
          {{- include "conveyor.componentSelectorLabels" (dict "root" .root "component" .component) | nindent 10 }}
  ports:
    - port: {{ .port }}
      protocol: TCP
{{- else -}}
- ports:
    {{- range .values.ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
  {{- with .values.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end }}

{{/* DNS, PostgreSQL and RabbitMQ: the egress every Conveyor pod needs. */}}
{{- define "conveyor.networkPolicy.baseEgress" -}}
{{- $np := .Values.networkPolicy -}}
- to:
    {{- toYaml $np.dns.to | nindent 4 }}
  ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{ include "conveyor.networkPolicy.serviceEgress" (dict "root" . "component" "postgresql" "inRelease" .Values.postgresql.enabled "port" 5432 "values" $np.postgresql) }}
{{ include "conveyor.networkPolicy.serviceEgress" (dict "root" . "component" "rabbitmq" "inRelease" .Values.rabbitmq.enabled "port" 5672 "values" $np.rabbitmq) }}
{{- end }}

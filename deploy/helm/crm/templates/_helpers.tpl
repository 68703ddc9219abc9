{{/*
Service components (everything except the gateway), in a fixed order.
*/}}
{{- define "crm.serviceNames" -}}
identity contacts sales marketing support
{{- end -}}

{{/* Chart name (app.kubernetes.io/name). */}}
{{- define "crm.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Resource name prefix: fullnameOverride or the release name. Truncated to 46
characters so the longest "<fullname>-marketing-worker" still fits a
63-character DNS label without truncation collapsing two names into one.
*/}}
{{- define "crm.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 46 | trimSuffix "-" -}}
{{- end -}}

{{- define "crm.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "crm.appVersion" -}}
{{- .Values.image.tag | default .Chart.AppVersion -}}
{{- end -}}

{{- define "crm.image" -}}
{{- printf "%s:%s" .Values.image.repository (include "crm.appVersion" .) -}}
{{- end -}}

{{- define "crm.selectorLabels" -}}
app.kubernetes.io/name: {{ include "crm.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "crm.labels" -}}
helm.sh/chart: {{ include "crm.chart" . }}
{{ include "crm.selectorLabels" . }}
app.kubernetes.io/version: {{ include "crm.appVersion" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: crm
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Per-component helpers take (dict "root" $ "component" "<name>").
Workers use component "<service>-worker" so web Services never select them.
*/}}
{{- define "crm.componentName" -}}
{{- printf "%s-%s" (include "crm.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "crm.componentSelectorLabels" -}}
{{ include "crm.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "crm.componentLabels" -}}
{{ include "crm.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "crm.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "crm.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Names of the chart-managed config objects. */}}
{{- define "crm.configMapName" -}}
{{- printf "%s-config" (include "crm.fullname" .) -}}
{{- end -}}
{{- define "crm.chartSecretName" -}}
{{- printf "%s-secrets" (include "crm.fullname" .) -}}
{{- end -}}
{{- define "crm.databaseSecretName" -}}
{{- printf "%s-database" (include "crm.fullname" .) -}}
{{- end -}}
{{/* Hook copies used by the migrations Job (they exist before pre-install hooks run). */}}
{{- define "crm.migrationsName" -}}
{{- printf "%s-migrations" (include "crm.fullname" .) -}}
{{- end -}}

{{/* Is the general Secret created by the chart? */}}
{{- define "crm.chartManagesSecret" -}}
{{- if and .Values.secrets.create (not .Values.secrets.existingSecret) -}}true{{- end -}}
{{- end -}}

{{/* Enabled service names, space separated. */}}
{{- define "crm.enabledServices" -}}
{{- $out := list -}}
{{- range $svc := splitList " " (include "crm.serviceNames" .) -}}
{{- $c := index $.Values.components $svc -}}
{{- if $c.enabled -}}{{- $out = append $out $svc -}}{{- end -}}
{{- end -}}
{{- join " " $out -}}
{{- end -}}

{{/* ConfigMap data (also hashed into the pod checksum annotation). */}}
{{- define "crm.configData" -}}
CRM_ENVIRONMENT: {{ .Values.config.environment | quote }}
CRM_LOG_LEVEL: {{ .Values.config.logLevel | quote }}
CRM_BILLING_MODE: {{ .Values.config.billingMode | quote }}
CRM_NATS_URL: {{ .Values.config.natsUrl | quote }}
{{- if and .Values.config.redisUrl (not .Values.secrets.redisUrl) (not (include "crm.redisAuth" .)) }}
CRM_REDIS_URL: {{ .Values.config.redisUrl | quote }}
{{- end }}
{{- with .Values.config.otlpEndpoint }}
CRM_OTLP_ENDPOINT: {{ . | quote }}
{{- end }}
{{- with .Values.config.appBaseUrl }}
CRM_APP_BASE_URL: {{ . | quote }}
{{- end }}
{{- with .Values.config.smtp }}
{{- with .host }}
CRM_SMTP_HOST: {{ . | quote }}
{{- end }}
CRM_SMTP_PORT: {{ .port | default 25 | toString | quote }}
CRM_SMTP_STARTTLS: {{ .starttls | default false | toString | quote }}
{{- with .username }}
CRM_SMTP_USERNAME: {{ . | quote }}
{{- end }}
{{- with .from }}
CRM_SMTP_FROM: {{ . | quote }}
{{- end }}
{{- end }}
{{- range $k, $v := .Values.config.extra }}
{{ $k }}: {{ $v | toString | quote }}
{{- end }}
{{- end -}}

{{/* Chart-managed general Secret data (stringData form). */}}
{{- define "crm.secretData" -}}
{{- if include "crm.chartManagesSecret" . -}}
{{- $s := .Values.secrets -}}
{{- $data := dict -}}
{{- with $s.jwtPrivateKey }}{{ $_ := set $data "CRM_JWT_PRIVATE_KEY" . }}{{ end -}}
{{- with $s.stripeSecretKey }}{{ $_ := set $data "CRM_STRIPE_SECRET_KEY" . }}{{ end -}}
{{- with $s.stripeWebhookSecret }}{{ $_ := set $data "CRM_STRIPE_WEBHOOK_SECRET" . }}{{ end -}}
{{- with $s.redisUrl }}{{ $_ := set $data "CRM_REDIS_URL" . }}{{ end -}}
{{- /* Platform-internal bearer token (gateway -> identity). When not given it is generated
     once and kept across upgrades (read back from the live Secret). */ -}}
{{- $internal := include "crm.stableSecret" (dict "root" . "secret" (include "crm.chartSecretName" .) "key" "CRM_INTERNAL_TOKEN" "value" $s.internalToken "length" 48) -}}
{{- $_ := set $data "CRM_INTERNAL_TOKEN" $internal -}}
{{- with $s.operatorToken }}{{ $_ := set $data "CRM_OPERATOR_TOKEN" . }}{{ end -}}
{{- with $s.smtpPassword }}{{ $_ := set $data "CRM_SMTP_PASSWORD" . }}{{ end -}}
{{- range $k, $v := $s.extra }}{{ $_ := set $data $k ($v | toString) }}{{ end -}}
{{- range $k, $v := $data }}
{{ $k }}: {{ $v | quote }}
{{- end }}
{{- end -}}
{{- end -}}

{{/*
Where a service's CRM_DATABASE_URL comes from.
Input: (dict "root" $ "name" "<service>" "hook" bool). Output: a secretKeyRef body.
*/}}
{{- define "crm.databaseUrlRef" -}}
{{- $c := index .root.Values.components .name -}}
{{- $db := $c.database | default dict -}}
{{- $key := printf "CRM_%s_DATABASE_URL" (upper .name) -}}
{{- if $db.existingSecret -}}
name: {{ $db.existingSecret }}
key: {{ $db.existingSecretKey | default $key }}
{{- else if .root.Values.database.existingSecret -}}
name: {{ .root.Values.database.existingSecret }}
key: {{ $db.existingSecretKey | default $key }}
{{- else -}}
name: {{ ternary (include "crm.migrationsName" .root) (include "crm.databaseSecretName" .root) .hook }}
key: {{ $key }}
{{- end -}}
{{- end -}}

{{- define "crm.databaseName" -}}
{{- $c := index .root.Values.components .name -}}
{{- $db := $c.database | default dict -}}
{{- $db.name | default (printf "crm_%s" .name) -}}
{{- end -}}

{{/* Chart-managed database Secret data: one key per enabled service without an existing Secret. */}}
{{- define "crm.databaseSecretData" -}}
{{- $root := . -}}
{{- range $svc := splitList " " (include "crm.enabledServices" .) -}}
{{- if $svc -}}
{{- $c := index $root.Values.components $svc -}}
{{- $db := $c.database | default dict -}}
{{- if not (or $db.existingSecret $root.Values.database.existingSecret) }}
{{- $url := $db.url | default $root.Values.database.url -}}
{{- if not $url -}}
{{- fail (printf "components.%s: set database.url, components.%s.database.url or an existingSecret" $svc $svc) -}}
{{- end }}
{{ printf "CRM_%s_DATABASE_URL" (upper $svc) }}: {{ include "crm.databaseUrlWithPassword" (dict "root" $root "url" $url) | quote }}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if include "crm.databasePasswordUsed" . }}
password: {{ include "crm.databasePassword" . | quote }}
{{- end }}
{{- end -}}

{{/*
A generated secret value that is the same in every template of one render (the
release's Secrets and their hook copies): the given value, else the live Secret's
(kept across upgrades), else random.
Input: (dict "root" $ "secret" "<Secret name>" "key" "<key>" "value" "<given>" ["length" n]).
*/}}
{{- define "crm.stableSecret" -}}
{{- if .value -}}
{{- .value -}}
{{- else -}}
{{- if not (hasKey .root.Values "crmGeneratedSecrets") -}}
{{- $_ := set .root.Values "crmGeneratedSecrets" dict -}}
{{- end -}}
{{- $cache := index .root.Values "crmGeneratedSecrets" -}}
{{- $id := printf "%s/%s" .secret .key -}}
{{- if not (hasKey $cache $id) -}}
{{- $live := lookup "v1" "Secret" .root.Release.Namespace .secret -}}
{{- if and $live $live.data (hasKey $live.data .key) -}}
{{- $_ := set $cache $id (index $live.data .key | b64dec) -}}
{{- else -}}
{{- $_ := set $cache $id (randAlphaNum (.length | default 32)) -}}
{{- end -}}
{{- end -}}
{{- index $cache $id -}}
{{- end -}}
{{- end -}}

{{/* PostgreSQL password: database.password, else generated once and kept. */}}
{{- define "crm.databasePassword" -}}
{{- include "crm.stableSecret" (dict "root" . "secret" (include "crm.databaseSecretName" .) "key" "password" "value" .Values.database.password) -}}
{{- end -}}

{{/* Does any chart-managed database URL lack a password (so the chart adds its own)? */}}
{{- define "crm.databasePasswordUsed" -}}
{{- $root := . -}}
{{- range $svc := splitList " " (include "crm.enabledServices" .) -}}
{{- if $svc -}}
{{- $db := (index $root.Values.components $svc).database | default dict -}}
{{- if not (or $db.existingSecret $root.Values.database.existingSecret) -}}
{{- $url := $db.url | default $root.Values.database.url -}}
{{- if and $url (not (contains ":" ((urlParse $url).userinfo | default ""))) -}}true{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A database URL with the chart's password when it carries none (never trust/no auth).
Input: (dict "root" $ "url" "<url>"). */}}
{{- define "crm.databaseUrlWithPassword" -}}
{{- $u := urlParse .url -}}
{{- if contains ":" ($u.userinfo | default "") -}}
{{- .url -}}
{{- else -}}
{{- $user := $u.userinfo | default "postgres" -}}
{{- $_ := set $u "userinfo" (printf "%s:%s" $user (include "crm.databasePassword" .root)) -}}
{{- urlJoin $u -}}
{{- end -}}
{{- end -}}

{{/* Redis with a password: the chart puts it into CRM_REDIS_URL (unless secrets.redisUrl
gives the whole URL). */}}
{{- define "crm.redisAuth" -}}
{{- if and .Values.redis.auth.enabled .Values.config.redisUrl (not .Values.secrets.redisUrl) -}}true{{- end -}}
{{- end -}}
{{- define "crm.redisSecretName" -}}
{{- .Values.redis.auth.existingSecret | default (printf "%s-redis" (include "crm.fullname" .)) -}}
{{- end -}}
{{- define "crm.redisPassword" -}}
{{- include "crm.stableSecret" (dict "root" . "secret" (printf "%s-redis" (include "crm.fullname" .)) "key" "redis-password" "value" .Values.redis.auth.password) -}}
{{- end -}}

{{/* Redis env: the password from its Secret, and the URL built around it. */}}
{{- define "crm.redisEnv" -}}
{{- if include "crm.redisAuth" . -}}
{{- $u := urlParse .Values.config.redisUrl -}}
{{- $_ := set $u "userinfo" ":$(CRM_REDIS_PASSWORD)" }}
- name: CRM_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "crm.redisSecretName" . }}
      key: {{ .Values.redis.auth.existingSecretKey | default "redis-password" }}
- name: CRM_REDIS_URL
  value: {{ urlJoin $u | replace "%28" "(" | replace "%29" ")" | quote }}
{{- end -}}
{{- end -}}

{{/*
NATS: one user per service, publish rights limited to its own subjects
(mirrors crm_lib.events.nats_permissions; tests/helm compares the two).
*/}}
{{- define "crm.natsSecretName" -}}
{{- .Values.nats.auth.existingSecret | default (printf "%s-nats" (include "crm.fullname" .)) -}}
{{- end -}}
{{- define "crm.natsPassword" -}}
{{- $key := printf "CRM_NATS_%s_PASSWORD" (upper .user | replace "-" "_") -}}
{{- include "crm.stableSecret" (dict "root" .root "secret" (printf "%s-nats" (include "crm.fullname" .root)) "key" $key "value" (index .root.Values.nats.auth.passwords .user | default "")) -}}
{{- end -}}
{{- define "crm.natsPermissions" -}}
{{- $svc := .service -}}
{{- $bucket := "OBJ_crm-exports" -}}
{{- $allow := list
  (printf "crm.*.%s.>" $svc)
  (printf "crmdlq.%s.>" $svc)
  "$O.crm-exports.>"
  "$JS.API.INFO"
  "$JS.API.STREAM.NAMES"
  "$JS.API.STREAM.LIST"
  "$JS.API.STREAM.INFO.*"
  (printf "$JS.API.STREAM.MSG.GET.%s" $bucket)
  (printf "$JS.API.DIRECT.GET.%s" $bucket)
  (printf "$JS.API.DIRECT.GET.%s.>" $bucket)
  (printf "$JS.API.STREAM.PURGE.%s" $bucket)
  "$JS.API.CONSUMER.CREATE.CRM_EVENTS.>"
  "$JS.API.CONSUMER.DURABLE.CREATE.CRM_EVENTS.*"
  "$JS.API.CONSUMER.INFO.CRM_EVENTS.*"
  "$JS.API.CONSUMER.MSG.NEXT.CRM_EVENTS.*"
  (printf "$JS.API.CONSUMER.CREATE.%s" $bucket)
  (printf "$JS.API.CONSUMER.CREATE.%s.>" $bucket)
  (printf "$JS.API.CONSUMER.INFO.%s.*" $bucket)
  (printf "$JS.API.CONSUMER.DELETE.%s.*" $bucket)
  "$JS.ACK.>"
  "$JS.FC.>" -}}
{{- dict "publish" (dict "allow" $allow) "subscribe" (dict "allow" (list "_INBOX.>" (printf "crm.*.%s.>" $svc))) | toJson -}}
{{- end -}}

{{/* nats-server `authorization` block (include it in the NATS server's config). */}}
{{- define "crm.natsAuthConf" -}}
{{- $root := . -}}
{{- $users := list (dict "user" .Values.nats.auth.adminUser "password" (include "crm.natsPassword" (dict "root" $root "user" "admin"))) -}}
{{- range $svc := splitList " " (include "crm.serviceNames" .) -}}
{{- $users = append $users (dict "user" $svc "password" (include "crm.natsPassword" (dict "root" $root "user" $svc)) "permissions" (include "crm.natsPermissions" (dict "service" $svc) | fromJson)) -}}
{{- end -}}
# Generated by the crm chart: one NATS user per service (publish only its own subjects)
# and the admin (streams). Include it in the NATS server's configuration.
authorization: {{ dict "users" $users | toJson }}
{{- end -}}

{{/* Chart-managed NATS Secret data: every user's password and auth.conf. */}}
{{- define "crm.natsSecretData" -}}
{{- if and .Values.nats.auth.enabled (not .Values.nats.auth.existingSecret) -}}
{{- $root := . }}
CRM_NATS_ADMIN_PASSWORD: {{ include "crm.natsPassword" (dict "root" $root "user" "admin") | quote }}
{{- range $svc := splitList " " (include "crm.serviceNames" .) }}
{{ printf "CRM_NATS_%s_PASSWORD" (upper $svc) }}: {{ include "crm.natsPassword" (dict "root" $root "user" $svc) | quote }}
{{- end }}
auth.conf: {{ include "crm.natsAuthConf" . | quote }}
{{- end -}}
{{- end -}}

{{/* A service process's NATS user. Input: (dict "root" $ "name" "<service>"). */}}
{{- define "crm.natsEnv" -}}
{{- if .root.Values.nats.auth.enabled }}
- name: CRM_NATS_USER
  value: {{ .name | quote }}
- name: CRM_NATS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "crm.natsSecretName" .root }}
      key: {{ printf "CRM_NATS_%s_PASSWORD" (upper .name) }}
{{- end -}}
{{- end -}}

{{/* Chart-managed Redis Secret data (for the Redis server's requirepass and the URL). */}}
{{- define "crm.redisSecretData" -}}
{{- if and (include "crm.redisAuth" .) (not .Values.redis.auth.existingSecret) -}}
redis-password: {{ include "crm.redisPassword" . | quote }}
{{- end -}}
{{- end -}}

{{/* Pod template annotations: config checksums roll pods on config changes. */}}
{{- define "crm.checksumAnnotations" -}}
checksum/config: {{ include "crm.configData" . | sha256sum }}
checksum/secrets: {{ printf "%s\n%s\n%s\n%s" (include "crm.secretData" .) (include "crm.databaseSecretData" .) (include "crm.natsSecretData" .) (include "crm.redisSecretData" .) | sha256sum }}
{{- end -}}

{{/*
envFrom: the ConfigMap, then the Secret (later sources win on duplicate keys).
Input: (dict "root" $ "hook" bool).
*/}}
{{- define "crm.envFrom" -}}
- configMapRef:
    name: {{ ternary (include "crm.migrationsName" .root) (include "crm.configMapName" .root) .hook }}
{{- if .root.Values.secrets.existingSecret }}
- secretRef:
    name: {{ .root.Values.secrets.existingSecret }}
{{- else if .root.Values.secrets.create }}
- secretRef:
    name: {{ ternary (include "crm.migrationsName" .root) (include "crm.chartSecretName" .root) .hook }}
{{- end }}
{{- end -}}

{{/*
Container env of a web or worker process.
Input: (dict "root" $ "name" "<component>" "worker" bool).
*/}}
{{- define "crm.componentEnv" -}}
{{- $root := .root -}}
{{- $c := index $root.Values.components .name -}}
{{- $plain := dict "CRM_SERVICE_NAME" .name -}}
{{- if eq .name "gateway" -}}
{{- range $svc := splitList " " (include "crm.enabledServices" $root) -}}
{{- if $svc -}}
{{- $_ := set $plain (printf "CRM_%s_URL" (upper $svc)) (printf "http://%s:80" (include "crm.componentName" (dict "root" $root "component" $svc))) -}}
{{- end -}}
{{- end -}}
{{- else -}}
{{- $_ := set $plain "CRM_DATABASE_NAME" (include "crm.databaseName" (dict "root" $root "name" .name)) -}}
{{- /* Services verify access tokens against identity's JWKS. */ -}}
{{- $_ := set $plain "CRM_IDENTITY_URL" (printf "http://%s:80" (include "crm.componentName" (dict "root" $root "component" "identity"))) -}}
{{- end -}}
{{- range $k, $v := $c.env }}{{ $_ := set $plain $k ($v | toString) }}{{ end -}}
{{- if .worker -}}
{{- range $k, $v := (($c.worker | default dict).env | default dict) }}{{ $_ := set $plain $k ($v | toString) }}{{ end -}}
{{- end -}}
{{- if ne .name "gateway" }}
- name: CRM_DATABASE_URL
  valueFrom:
    secretKeyRef:
      {{- include "crm.databaseUrlRef" (dict "root" $root "name" .name "hook" false) | nindent 6 }}
{{- include "crm.natsEnv" (dict "root" $root "name" .name) }}
{{- end }}
{{- include "crm.redisEnv" $root }}
{{- range $k, $v := $plain }}
- name: {{ $k }}
  value: {{ $v | quote }}
{{- end }}
{{- end -}}

{{- define "crm.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext -}}
{{- end -}}

{{- define "crm.containerSecurityContext" -}}
{{- toYaml .Values.securityContext -}}
{{- end -}}

{{/*
Shared pod-level fields (after containers).
Input: (dict "root" $ "component" "<component label>" ["serviceAccountName" "<override>"]).
topologySpreadConstraints without a labelSelector get the component's selector labels.
*/}}
{{- define "crm.podCommon" -}}
{{- $component := .component -}}
{{- $root := .root -}}
{{- $sa := .serviceAccountName | default (include "crm.serviceAccountName" .root) -}}
{{- with .root -}}
serviceAccountName: {{ $sa }}
automountServiceAccountToken: false
securityContext:
  {{- include "crm.podSecurityContext" . | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- range $tsc := . }}
  {{- $t := deepCopy $tsc }}
  {{- if not (hasKey $t "labelSelector") }}
  {{- $_ := set $t "labelSelector" (dict "matchLabels" (include "crm.componentSelectorLabels" (dict "root" $root "component" $component) | fromYaml)) }}
  {{- end }}
  - {{- toYaml $t | nindent 4 }}
  {{- end }}
{{- end }}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: {{ .Values.tmpSizeLimit }}
{{- end -}}
{{- end -}}

{{- define "crm.tmpVolumeMount" -}}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/*
Effective autoscaling settings of a component: top-level block overridden key by
key by components.<name>.autoscaling (explicit false/0 wins, unlike sprig merge).
Input: (dict "root" $ "name" "<component>"). Output: YAML.
*/}}
{{- define "crm.autoscaling" -}}
{{- $c := index .root.Values.components .name -}}
{{- $out := deepCopy .root.Values.autoscaling -}}
{{- range $k, $v := ($c.autoscaling | default dict) }}{{ $_ := set $out $k $v }}{{ end -}}
{{- toYaml $out -}}
{{- end -}}

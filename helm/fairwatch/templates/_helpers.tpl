{{- define "fairwatch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "fairwatch.fullname" -}}
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

{{- define "fairwatch.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "fairwatch.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "fairwatch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fairwatch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "fairwatch.workerSelectorLabels" -}}
{{ include "fairwatch.selectorLabels" . }}
app.kubernetes.io/component: worker
{{- end -}}

{{- define "fairwatch.sealerSelectorLabels" -}}
{{ include "fairwatch.selectorLabels" . }}
app.kubernetes.io/component: sealer
{{- end -}}

{{/* The claim holding the checkpoints kept outside the store: the chart's, or evidence.checkpoints.existingClaim. */}}
{{- define "fairwatch.checkpointsClaim" -}}
{{- default (printf "%s-evidence-checkpoints" (include "fairwatch.fullname" .)) .Values.evidence.checkpoints.existingClaim -}}
{{- end -}}

{{- define "fairwatch.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "fairwatch.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "fairwatch.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "fairwatch.secretName" -}}
{{- default (include "fairwatch.fullname" .) .Values.clickhouse.existingSecret -}}
{{- end -}}

{{/* Refuse values the workers cannot honour, at render time rather than in a crash loop. */}}
{{- define "fairwatch.validate" -}}
{{- $partitions := int .Values.kafka.partitions -}}
{{- if lt $partitions 1 -}}
{{- fail "kafka.partitions must be at least 1" -}}
{{- end -}}
{{- if gt (int .Values.worker.replicas) $partitions -}}
{{- fail (printf "worker.replicas (%d) exceeds kafka.partitions (%d): a worker beyond the partition count owns no partition and only adds rebalances" (int .Values.worker.replicas) $partitions) -}}
{{- end -}}
{{- if and .Values.keda.enabled (gt (int .Values.keda.maxReplicas) $partitions) -}}
{{- fail (printf "keda.maxReplicas (%d) exceeds kafka.partitions (%d)" (int .Values.keda.maxReplicas) $partitions) -}}
{{- end -}}
{{- if and .Values.kafka.sasl.enabled (not .Values.kafka.tls.enabled) -}}
{{- fail "kafka.sasl without kafka.tls would send the Kafka password in clear text; enable kafka.tls too" -}}
{{- end -}}
{{- if and .Values.alertmanager.username (not (hasPrefix "https://" .Values.alertmanager.url)) -}}
{{- fail "alertmanager.username needs an https alertmanager.url: basic auth over http sends the password in clear text" -}}
{{- end -}}
{{- if and .Values.kafka.sasl.enabled (not .Values.kafka.sasl.username) -}}
{{- fail "kafka.sasl.enabled needs kafka.sasl.username (its password: secrets.kafkaPassword or the existing Secret's key)" -}}
{{- end -}}
{{- if and (not .Values.clickhouse.existingSecret) (not .Values.clickhouse.url) -}}
{{- fail "set clickhouse.url or clickhouse.existingSecret (FAIRWATCH_CLICKHOUSE is required)" -}}
{{- end -}}
{{- if not .Values.kafka.bootstrapServers -}}
{{- fail "kafka.bootstrapServers is required (FAIRWATCH_KAFKA)" -}}
{{- end -}}
{{- if and .Values.evidence.enabled (not .Values.evidence.keySecret) -}}
{{- fail "evidence.enabled needs evidence.keySecret: the name of a Secret holding the operator's signer key, which the chart never makes (kubectl create secret generic fairwatch-evidence-key --from-file=operator.key=./operator.key; docs/deployment.md, Evidence log)" -}}
{{- end -}}
{{- end -}}

{{/* Settings shared by the workers and the migrations job (topics + migrate). */}}
{{- define "fairwatch.connectionEnv" -}}
- name: FAIRWATCH_KAFKA
  value: {{ .Values.kafka.bootstrapServers | quote }}
{{- $sasl := .Values.kafka.sasl.enabled }}
{{- $tls := .Values.kafka.tls.enabled }}
- name: FAIRWATCH_KAFKA_SECURITY_PROTOCOL
  value: {{ if and $sasl $tls }}"SASL_SSL"{{ else if $tls }}"SSL"{{ else }}""{{ end }}
- name: FAIRWATCH_KAFKA_SASL_MECHANISM
  value: {{ if $sasl }}{{ .Values.kafka.sasl.mechanism | quote }}{{ else }}""{{ end }}
- name: FAIRWATCH_KAFKA_USERNAME
  value: {{ if $sasl }}{{ .Values.kafka.sasl.username | quote }}{{ else }}""{{ end }}
- name: FAIRWATCH_KAFKA_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "fairwatch.secretName" . }}
      key: {{ .Values.secrets.kafkaPasswordKey }}
      optional: true
# it comes from the Secret above, not from a file
- name: FAIRWATCH_KAFKA_PASSWORD_FILE
  value: ""
- name: FAIRWATCH_KAFKA_CA_FILE
  value: {{ if and $tls .Values.kafka.tls.caSecret }}"/etc/fairwatch/kafka-ca/ca.crt"{{ else }}""{{ end }}
- name: FAIRWATCH_KAFKA_CERT_FILE
  value: {{ if and $tls .Values.kafka.tls.clientCertSecret }}"/etc/fairwatch/kafka-client/tls.crt"{{ else }}""{{ end }}
- name: FAIRWATCH_KAFKA_KEY_FILE
  value: {{ if and $tls .Values.kafka.tls.clientCertSecret }}"/etc/fairwatch/kafka-client/tls.key"{{ else }}""{{ end }}
- name: FAIRWATCH_CLICKHOUSE
  valueFrom:
    secretKeyRef:
      name: {{ include "fairwatch.secretName" . }}
      key: {{ .Values.clickhouse.existingSecretKey }}
- name: FAIRWATCH_TOPIC_PREFIX
  value: {{ .Values.kafka.topicPrefix | quote }}
- name: FAIRWATCH_PARTITIONS
  value: {{ .Values.kafka.partitions | quote }}
- name: FAIRWATCH_REPLICATION
  value: {{ .Values.kafka.replication | quote }}
# the topics job creates the workers' join-log changelog under this id
- name: FAIRWATCH_APP_ID
  value: {{ .Values.worker.appId | quote }}
{{- end -}}

{{/* Every setting of streams/fairwatch/stream/worker_settings.py WORKER_ENVIRONMENT, plus the alerting URLs. */}}
{{- define "fairwatch.workerEnv" -}}
{{ include "fairwatch.connectionEnv" . }}
- name: FAIRWATCH_TABLE_STORE
  value: {{ .Values.worker.tableStore | quote }}
- name: FAIRWATCH_DATA_DIR
  value: /var/lib/fairwatch
- name: FAIRWATCH_WEB_HOST
  value: "0.0.0.0"
- name: FAIRWATCH_WEB_PORT
  value: {{ .Values.worker.webPort | quote }}
- name: FAIRWATCH_BATCH_SIZE
  value: {{ .Values.worker.batchSize | quote }}
- name: FAIRWATCH_BATCH_WITHIN
  value: {{ .Values.worker.batchWithin | quote }}
- name: FAIRWATCH_BUCKET_SECONDS
  value: {{ .Values.worker.bucketSeconds | quote }}
- name: FAIRWATCH_TTL_DAYS
  value: {{ .Values.worker.ttlDays | quote }}
- name: FAIRWATCH_INTERSECTIONS
  value: {{ .Values.worker.intersections | quote }}
- name: FAIRWATCH_SESSION_TIMEOUT
  value: {{ .Values.worker.sessionTimeout | quote }}
- name: FAIRWATCH_COMMIT_SECONDS
  value: {{ .Values.worker.commitSeconds | quote }}
# static group membership: a pod restarted under its stable name gets its partitions back
- name: FAIRWATCH_INSTANCE_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: FAIRWATCH_SNAPSHOT_SECONDS
  value: {{ .Values.worker.snapshotSeconds | quote }}
# detection and alerting run when policy files are given (mounted from the policies ConfigMap)
- name: FAIRWATCH_POLICIES
  value: {{ if .Values.policies }}"/etc/fairwatch/policies"{{ else }}""{{ end }}
- name: FAIRWATCH_DETECT_SECONDS
  value: {{ .Values.worker.detectSeconds | quote }}
# signed input is checked when a keyring is given (mounted from the keyring ConfigMap)
- name: FAIRWATCH_KEYRING
  value: {{ if .Values.keyring }}"/etc/fairwatch/keyring/keyring.yaml"{{ else }}""{{ end }}
- name: FAIRWATCH_AUDIT_CHAIN
  value: {{ .Values.worker.auditChain | quote }}
- name: FAIRWATCH_ALERTMANAGER
  value: {{ .Values.alertmanager.url | quote }}
- name: FAIRWATCH_ALERTMANAGER_USERNAME
  value: {{ .Values.alertmanager.username | quote }}
- name: FAIRWATCH_ALERTMANAGER_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "fairwatch.secretName" . }}
      key: {{ .Values.secrets.alertmanagerPasswordKey }}
      optional: true
# it comes from the Secret above, not from a file
- name: FAIRWATCH_ALERTMANAGER_PASSWORD_FILE
  value: ""
- name: FAIRWATCH_ALERTMANAGER_CA_FILE
  value: {{ if .Values.alertmanager.caSecret }}"/etc/fairwatch/alertmanager-ca/ca.crt"{{ else }}""{{ end }}
- name: FAIRWATCH_GRAFANA
  value: {{ .Values.grafana.url | quote }}
- name: FAIRWATCH_GRAFANA_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "fairwatch.secretName" . }}
      key: {{ .Values.secrets.grafanaTokenKey }}
      optional: true
- name: FAIRWATCH_AUDIT_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "fairwatch.secretName" . }}
      key: {{ .Values.secrets.auditKeyKey }}
      optional: true
{{- with .Values.worker.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}


{{/* The CAs and client certificates the links use, mounted read-only from Secrets. */}}
{{- define "fairwatch.linkMounts" -}}
{{- if and .Values.kafka.tls.enabled .Values.kafka.tls.caSecret }}
- {name: kafka-ca, mountPath: /etc/fairwatch/kafka-ca, readOnly: true}
{{- end }}
{{- if and .Values.kafka.tls.enabled .Values.kafka.tls.clientCertSecret }}
- {name: kafka-client, mountPath: /etc/fairwatch/kafka-client, readOnly: true}
{{- end }}
{{- if .Values.clickhouse.caSecret }}
- {name: clickhouse-ca, mountPath: /etc/fairwatch/clickhouse-ca, readOnly: true}
{{- end }}
{{- if .Values.alertmanager.caSecret }}
- {name: alertmanager-ca, mountPath: /etc/fairwatch/alertmanager-ca, readOnly: true}
{{- end }}
{{- end -}}

{{- define "fairwatch.linkVolumes" -}}
{{- if and .Values.kafka.tls.enabled .Values.kafka.tls.caSecret }}
- name: kafka-ca
  secret: {secretName: {{ .Values.kafka.tls.caSecret }}, items: [{key: ca.crt, path: ca.crt}]}
{{- end }}
{{- if and .Values.kafka.tls.enabled .Values.kafka.tls.clientCertSecret }}
- name: kafka-client
  secret: {secretName: {{ .Values.kafka.tls.clientCertSecret }}, items: [{key: tls.crt, path: tls.crt}, {key: tls.key, path: tls.key}]}
{{- end }}
{{- if .Values.clickhouse.caSecret }}
- name: clickhouse-ca
  secret: {secretName: {{ .Values.clickhouse.caSecret }}, items: [{key: ca.crt, path: ca.crt}]}
{{- end }}
{{- if .Values.alertmanager.caSecret }}
- name: alertmanager-ca
  secret: {secretName: {{ .Values.alertmanager.caSecret }}, items: [{key: ca.crt, path: ca.crt}]}
{{- end }}
{{- end -}}

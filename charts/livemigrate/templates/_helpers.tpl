{{/* The image of a component: <registry>/<name>:<tag or v<appVersion>>. */}}
{{- define "livemigrate.image" -}}
{{- $tag := .root.Values.image.tag | default (printf "v%s" .root.Chart.AppVersion) -}}
{{- printf "%s/%s:%s" .root.Values.image.registry .name $tag -}}
{{- end -}}

{{- define "livemigrate.labels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: livemigrate
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{- define "livemigrate.selector" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "livemigrate.pullSecrets" -}}
{{- with .Values.image.pullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
The serving certificate of a webhook Service, in mode auto: the CA is read back
from the Secret <name>-ca when it exists (so caBundle stays valid across
upgrades) or generated; the serving certificate is renewed on every render.
Returns YAML with caCert, caKey, cert, key (PEM).
*/}}
{{- define "livemigrate.webhookCerts" -}}
{{- $caName := printf "%s-ca" .secret -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace $caName -}}
{{- $ca := dict -}}
{{- if and $existing $existing.data (hasKey $existing.data "tls.crt") (hasKey $existing.data "tls.key") -}}
{{- $ca = buildCustomCert (index $existing.data "tls.crt") (index $existing.data "tls.key") -}}
{{- else -}}
{{- $ca = genCA "livemigrate-webhook-ca" (int .root.Values.certs.caValidityDays) -}}
{{- end -}}
{{- $cn := printf "%s.%s.svc" .service .root.Release.Namespace -}}
{{- $alt := list .service (printf "%s.%s" .service .root.Release.Namespace) $cn (printf "%s.cluster.local" $cn) -}}
{{- $cert := genSignedCert $cn nil $alt (int .root.Values.certs.validityDays) $ca -}}
caCert: {{ $ca.Cert | b64enc }}
caKey: {{ $ca.Key | b64enc }}
cert: {{ $cert.Cert | b64enc }}
key: {{ $cert.Key | b64enc }}
{{- end -}}

{{/* The webhook Secret(s) of mode auto (with .certs from livemigrate.webhookCerts) or cert-manager. */}}
{{- define "livemigrate.webhookCertObjects" -}}
{{- if eq .root.Values.certs.mode "auto" }}
{{- $c := .certs }}
apiVersion: v1
kind: Secret
metadata:
  name: {{ .secret }}-ca
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "livemigrate.labels" (dict "root" .root "name" .name "component" "webhook-ca") | nindent 4 }}
type: kubernetes.io/tls
data:
  tls.crt: {{ $c.caCert }}
  tls.key: {{ $c.caKey }}
---
apiVersion: v1
kind: Secret
metadata:
  name: {{ .secret }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "livemigrate.labels" (dict "root" .root "name" .name "component" "webhook-cert") | nindent 4 }}
type: kubernetes.io/tls
data:
  ca.crt: {{ $c.caCert }}
  tls.crt: {{ $c.cert }}
  tls.key: {{ $c.key }}
{{- else if eq .root.Values.certs.mode "cert-manager" }}
{{- $issuer := .root.Values.certs.certManager.issuerRef }}
{{- if not $issuer }}
{{- $issuer = dict "name" (printf "%s-ca" .secret) "kind" "Issuer" }}
apiVersion: cert-manager.io/v1
kind: Issuer
metadata:
  name: {{ .secret }}-selfsigned
  namespace: {{ .root.Release.Namespace }}
spec:
  selfSigned: {}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  name: {{ .secret }}-ca
  namespace: {{ .root.Release.Namespace }}
spec:
  isCA: true
  commonName: livemigrate-webhook-ca
  secretName: {{ .secret }}-ca
  duration: {{ mul .root.Values.certs.caValidityDays 24 }}h
  issuerRef:
    name: {{ .secret }}-selfsigned
    kind: Issuer
---
apiVersion: cert-manager.io/v1
kind: Issuer
metadata:
  name: {{ .secret }}-ca
  namespace: {{ .root.Release.Namespace }}
spec:
  ca:
    secretName: {{ .secret }}-ca
---
{{- end }}
apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  name: {{ .secret }}
  namespace: {{ .root.Release.Namespace }}
spec:
  secretName: {{ .secret }}
  duration: {{ mul .root.Values.certs.validityDays 24 }}h
  dnsNames:
    - {{ .service }}.{{ .root.Release.Namespace }}.svc
    - {{ .service }}.{{ .root.Release.Namespace }}.svc.cluster.local
  issuerRef:
    {{- toYaml $issuer | nindent 4 }}
{{- else if ne .root.Values.certs.mode "custom" }}
{{- fail (printf "certs.mode %q is not one of auto, cert-manager, custom" .root.Values.certs.mode) }}
{{- end }}
{{- end -}}

{{- /* URL the karmada-apiserver calls one of the descheduler's webhooks at:
descheduler.webhook.url (scheme, host and port) or the descheduler's Service, and the path. */ -}}
{{- define "livemigrate.deschedulerWebhookURL" -}}
{{- .root.Values.descheduler.webhook.url | default "https://livemigrate-descheduler.karmada-system.svc:443" | trimSuffix "/" }}{{ .path }}
{{- end -}}

{{/* One RBAC subject from {kind, name[, namespace]} (kind User, Group or ServiceAccount). */}}
{{- define "livemigrate.subject" -}}
{{- if eq .kind "ServiceAccount" -}}
- kind: ServiceAccount
  name: {{ .name }}
  namespace: {{ .namespace }}
{{- else -}}
- apiGroup: rbac.authorization.k8s.io
  kind: {{ .kind }}
  name: {{ .name }}
{{- end -}}
{{- end -}}

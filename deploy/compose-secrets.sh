#!/usr/bin/env bash
# Secrets for deploy/compose.yaml: panel.env and postgres.env (0600) and a self-signed TLS
# pair in deploy/tls/ (replace it with your certificate). Existing files are kept.
#   deploy/compose-secrets.sh panel.example.com
set -euo pipefail
domain=${1:?usage: $0 DOMAIN}
[[ $domain =~ ^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$ ]] || { echo "bad domain" >&2; exit 2; }
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
token() { head -c 48 /dev/urandom | base64 | tr -d '\n/+=' | head -c 50; }
umask 077
if [ ! -e "$here/panel.env" ]; then
  db_password=$(token)
  printf 'POSTGRES_PASSWORD=%s\n' "$db_password" >"$here/postgres.env"
  cat >"$here/panel.env" <<ENV
SECRET_KEY=$(token)
PANEL_ENCRYPTION_KEYS=$(head -c 32 /dev/urandom | base64 | tr '/+' '_-')
PANEL_AUDIT_KEYS=$(token)
DATABASE_URL=postgres://panel:${db_password}@postgres:5432/panel
ALLOWED_HOSTS=${domain}
CSRF_TRUSTED_ORIGINS=https://${domain}
DEFAULT_FROM_EMAIL=panel@${domain}
ENV
  echo "wrote $here/panel.env and $here/postgres.env"
fi
if [ ! -e "$here/tls/panel.crt" ]; then
  mkdir -p "$here/tls"
  openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=$domain" \
    -addext "subjectAltName=DNS:$domain" \
    -keyout "$here/tls/panel.key" -out "$here/tls/panel.crt" 2>/dev/null
  chmod 0644 "$here/tls/panel.crt"
  echo "wrote a self-signed pair in $here/tls"
fi

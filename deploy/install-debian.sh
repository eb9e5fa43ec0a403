#!/usr/bin/env bash
# Install the panel on a Debian 12 server: system user, virtualenv, PostgreSQL database and
# role, Redis, secrets in an env file only the panel reads, migrations, static files, the
# first administrator, systemd units (web x N, worker x N, collector) and the nginx site.
#
#   sudo PANEL_DOMAIN=panel.example.com PANEL_ADMIN_EMAIL=you@example.com \
#        deploy/install-debian.sh
#
# Running it again upgrades in place: existing secrets, database and certificate are kept,
# and `manage.py upgrade` migrates and restarts the processes one by one.
#
#   deploy/install-debian.sh --render-nginx
# writes only the nginx site (deploy/nginx/compose.conf is this with the compose values), and
#   deploy/install-debian.sh --render
# writes only the files (env file with fresh secrets, TLS key pair, units, nginx site) to the
# paths below, without touching packages, users, databases or services: tests use it with
# every path pointing into a scratch directory.
set -euo pipefail

PANEL_DOMAIN=${PANEL_DOMAIN:-$(hostname -f 2>/dev/null || hostname)}
PANEL_ADMIN_EMAIL=${PANEL_ADMIN_EMAIL:-admin@${PANEL_DOMAIN}}
PANEL_USER=${PANEL_USER:-panel}
PANEL_HOME=${PANEL_HOME:-/opt/panel}            # app/ (the code) and venv/
PANEL_ETC=${PANEL_ETC:-/etc/panel}              # panel.env (0600) and tls/
PANEL_STATE=${PANEL_STATE:-/var/lib/panel}      # PANEL_VAR_DIR: static files, media, audit witness
PANEL_DB=${PANEL_DB:-panel}
PANEL_WEB_PORTS=${PANEL_WEB_PORTS:-"8001 8002"} # one web process per port
# nginx's upstream servers, host:port; default: 127.0.0.1 and each of PANEL_WEB_PORTS.
PANEL_WEB_UPSTREAMS=${PANEL_WEB_UPSTREAMS:-$(for p in $PANEL_WEB_PORTS; do printf '127.0.0.1:%s ' "$p"; done)}
PANEL_WORKER_INSTANCES=${PANEL_WORKER_INSTANCES:-2} # qcluster instances (each runs PANEL_WORKERS task processes)
PANEL_REDIS_URL=${PANEL_REDIS_URL:-redis://127.0.0.1:6379/0}
HTTP_LISTEN=${HTTP_LISTEN:-80}
HTTPS_LISTEN=${HTTPS_LISTEN:-443}
NGINX_SITE=${NGINX_SITE:-/etc/nginx/sites-available/panel.conf}
SYSTEMD_DIR=${SYSTEMD_DIR:-/etc/systemd/system}
SOURCE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Names that end up in configuration files and commands: checked whole, never interpolated
# as given.
# "_" (nginx's "any name") only for a site rendered by itself (the compose one).
[[ $PANEL_DOMAIN =~ ^([A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|_)$ ]] || { echo "bad PANEL_DOMAIN" >&2; exit 2; }
[[ $PANEL_USER =~ ^[a-z_][a-z0-9_-]{0,31}$ ]] || { echo "bad PANEL_USER" >&2; exit 2; }
[[ $PANEL_DB =~ ^[a-z_][a-z0-9_]{0,62}$ ]] || { echo "bad PANEL_DB" >&2; exit 2; }
[[ $PANEL_WORKER_INSTANCES =~ ^[1-9][0-9]?$ ]] || { echo "bad PANEL_WORKER_INSTANCES" >&2; exit 2; }
[[ $PANEL_ADMIN_EMAIL =~ ^[^[:space:]@]+@[^[:space:]@]+$ ]] || { echo "bad PANEL_ADMIN_EMAIL" >&2; exit 2; }
# Root sources the env file as bash (WITH_ENV below) and the paths reach sed and units:
# absolute paths of plain components (none starting with a dot), a plain redis:// URL.
for path in "$PANEL_HOME" "$PANEL_ETC" "$PANEL_STATE"; do
  [[ $path =~ ^(/[A-Za-z0-9_][A-Za-z0-9._-]{0,63}){1,16}$ ]] || { echo "bad path: $path" >&2; exit 2; }
done
[[ $PANEL_REDIS_URL =~ ^rediss?://([A-Za-z0-9._~-]*(:[A-Za-z0-9._~-]+)?@)?[A-Za-z0-9][A-Za-z0-9.-]{0,252}(:[1-9][0-9]{0,4})?(/[0-9]{1,2})?$ ]] ||
  { echo "bad PANEL_REDIS_URL" >&2; exit 2; }
for port in $PANEL_WEB_PORTS; do
  [[ $port =~ ^[1-9][0-9]{0,4}$ ]] || { echo "bad port in PANEL_WEB_PORTS: $port" >&2; exit 2; }
done
for upstream in $PANEL_WEB_UPSTREAMS; do
  [[ $upstream =~ ^[A-Za-z0-9][A-Za-z0-9.-]{0,252}:[1-9][0-9]{0,4}$ ]] || { echo "bad upstream: $upstream" >&2; exit 2; }
done
for listen in "$HTTP_LISTEN" "$HTTPS_LISTEN"; do
  [[ $listen =~ ^([0-9.]{7,15}:)?[1-9][0-9]{0,4}$ ]] || { echo "bad listen address: $listen" >&2; exit 2; }
done

log() { printf '==> %s\n' "$*"; }

random_token() { head -c 48 /dev/urandom | base64 | tr -d '\n/+=' | head -c 50; }
fernet_key() { head -c 32 /dev/urandom | base64 | tr '/+' '_-'; }

# The env file is created once, 0600 and owned by the panel user (re-runs keep it: the
# encryption key opens every stored secret). Rotating keys is described in docs/install.md.
write_env_file() {
  local file=$PANEL_ETC/panel.env
  mkdir -p "$PANEL_ETC"
  chmod 0750 "$PANEL_ETC"
  if [ -e "$file" ]; then
    log "keeping $file"
    return
  fi
  log "writing $file (fresh secrets)"
  local db_password
  db_password=$(random_token)
  (
    umask 077
    cat >"$file" <<ENV
# Unified Hosting Panel: read by every panel process (systemd EnvironmentFile).
# Back this file up with the panel's backups: PANEL_ENCRYPTION_KEYS opens the stored secrets.
SECRET_KEY=$(random_token)
PANEL_ENCRYPTION_KEYS=$(fernet_key)
PANEL_AUDIT_KEYS=$(random_token)
DATABASE_URL=postgres://${PANEL_DB}:${db_password}@127.0.0.1:5432/${PANEL_DB}
REDIS_URL=${PANEL_REDIS_URL}
ALLOWED_HOSTS=${PANEL_DOMAIN}
CSRF_TRUSTED_ORIGINS=https://${PANEL_DOMAIN}
PANEL_BEHIND_PROXY=1
PANEL_VAR_DIR=${PANEL_STATE}
PANEL_LOG_FORMAT=json
DEFAULT_FROM_EMAIL=panel@${PANEL_DOMAIN}
EMAIL_HOST=localhost
ENV
  )
  chmod 0600 "$file"
  if id "$PANEL_USER" >/dev/null 2>&1; then
    chown "$PANEL_USER:" "$file" # and the user's login group
    chgrp "$(id -gn "$PANEL_USER")" "$PANEL_ETC"
  fi
}

# A self-signed pair so nginx starts; replace it with a real certificate (docs/install.md).
write_tls_pair() {
  local dir=$PANEL_ETC/tls
  mkdir -p "$dir"
  [ -e "$dir/panel.crt" ] && return
  log "self-signed certificate for $PANEL_DOMAIN in $dir (replace it)"
  (
    umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=$PANEL_DOMAIN" \
      -addext "subjectAltName=DNS:$PANEL_DOMAIN" \
      -keyout "$dir/panel.key" -out "$dir/panel.crt" 2>/dev/null
  )
  chmod 0644 "$dir/panel.crt"
}

render_nginx() {
  local upstream="" server
  # max_fails=0: a web process that is restarting is never marked down for a while (with
  # two processes restarted one after the other, both could be "down" at once and nginx would
  # answer 502); a refused connection costs nothing and the next process is tried at once.
  for server in $PANEL_WEB_UPSTREAMS; do
    upstream+="    server ${server} max_fails=0;"$'\n'
  done
  mkdir -p "$(dirname "$NGINX_SITE")"
  log "nginx site $NGINX_SITE"
  # awk, not sed: the upstream block spans lines.
  awk -v up="${upstream%$'\n'}" -v domain="$PANEL_DOMAIN" -v cert="$PANEL_ETC/tls/panel.crt" \
    -v key="$PANEL_ETC/tls/panel.key" -v static="$PANEL_STATE/staticfiles" \
    -v http="$HTTP_LISTEN" -v https="$HTTPS_LISTEN" '
    { gsub(/@UPSTREAM_SERVERS@/, up); gsub(/@DOMAIN@/, domain); gsub(/@TLS_CERT@/, cert);
      gsub(/@TLS_KEY@/, key); gsub(/@STATIC_ROOT@/, static); gsub(/@HTTP_LISTEN@/, http);
      gsub(/@HTTPS_LISTEN@/, https); print }' \
    "$SOURCE_DIR/deploy/nginx/panel.conf.in" >"$NGINX_SITE"
}

render_units() {
  mkdir -p "$SYSTEMD_DIR"
  log "systemd units in $SYSTEMD_DIR"
  local unit
  for unit in "$SOURCE_DIR"/deploy/systemd/*; do
    sed -e "s|/opt/panel|$PANEL_HOME|g" -e "s|/etc/panel|$PANEL_ETC|g" \
      -e "s|/var/lib/panel|$PANEL_STATE|g" -e "s|^User=panel$|User=$PANEL_USER|" \
      -e "s|^Group=panel$|Group=$PANEL_USER|" "$unit" >"$SYSTEMD_DIR/$(basename "$unit")"
  done
}

if [ "${1:-}" = "--render-nginx" ]; then
  render_nginx
  exit 0
fi
if [ "${1:-}" = "--render" ]; then
  write_env_file
  write_tls_pair
  render_nginx
  render_units
  exit 0
fi

[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
[ "$PANEL_DOMAIN" != "_" ] || { echo "set PANEL_DOMAIN to the panel's host name" >&2; exit 2; }

log "Debian packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends python3 python3-venv postgresql redis-server \
  nginx openssl ca-certificates restic

log "system user $PANEL_USER"
id "$PANEL_USER" >/dev/null 2>&1 ||
  useradd --system --home-dir "$PANEL_STATE" --create-home --shell /usr/sbin/nologin "$PANEL_USER"
install -d -o "$PANEL_USER" -g "$PANEL_USER" -m 0750 "$PANEL_STATE"

log "code in $PANEL_HOME/app, virtualenv in $PANEL_HOME/venv"
install -d -m 0755 "$PANEL_HOME"
# A fresh tree swapped in (files deleted upstream do not linger), owned by root whoever owns
# the checkout, with modes from root's umask.
rm -rf "$PANEL_HOME/app.new" "$PANEL_HOME/app.old"
install -d -m 0755 "$PANEL_HOME/app.new"
tar -C "$SOURCE_DIR" --exclude=.git --exclude=.venv --exclude=var --exclude=node_modules \
  --exclude=__pycache__ -cf - . |
  tar -C "$PANEL_HOME/app.new" --no-same-owner --no-same-permissions -xf -
[ ! -e "$PANEL_HOME/app" ] || mv "$PANEL_HOME/app" "$PANEL_HOME/app.old"
mv "$PANEL_HOME/app.new" "$PANEL_HOME/app"
rm -rf "$PANEL_HOME/app.old"
[ -x "$PANEL_HOME/venv/bin/python" ] || python3 -m venv "$PANEL_HOME/venv"
"$PANEL_HOME/venv/bin/pip" install -q --upgrade pip
"$PANEL_HOME/venv/bin/pip" install -q "$PANEL_HOME/app"

write_env_file
write_tls_pair

log "PostgreSQL role and database $PANEL_DB"
systemctl enable --now postgresql redis-server
db_password=$(sed -n "s|^DATABASE_URL=postgres://[^:]*:\([^@]*\)@.*|\1|p" "$PANEL_ETC/panel.env")
# The password goes through the environment (\getenv), never argv (ps shows argv to all).
PANEL_DB_PASSWORD=$db_password runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 \
  -v name="$PANEL_DB" <<'SQL'
\getenv pw PANEL_DB_PASSWORD
SELECT format('CREATE ROLE %I LOGIN', :'name') WHERE NOT EXISTS
  (SELECT FROM pg_roles WHERE rolname = :'name') \gexec
SELECT format('ALTER ROLE %I PASSWORD %L', :'name', :'pw') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'name', :'name') WHERE NOT EXISTS
  (SELECT FROM pg_database WHERE datname = :'name') \gexec
SQL

# Runs "$@" with the panel's environment (the env file, exported) in the code's directory.
# shellcheck disable=SC2016 # $0 and $@ are the inner shell's
WITH_ENV=(bash -c 'set -a; . "$0"; set +a; exec "$@"' "$PANEL_ETC/panel.env")
manage() {
  # As the panel's user: only it may read the env file.
  runuser -u "$PANEL_USER" -- env -C "$PANEL_HOME/app" "${WITH_ENV[@]}" \
    "$PANEL_HOME/venv/bin/python" manage.py "$@"
}

render_units
render_nginx
ln -sf "$NGINX_SITE" /etc/nginx/sites-enabled/panel.conf
systemctl daemon-reload

log "migrations, static files, deployment check"
manage upgrade --no-restart
manage check --deploy

log "first administrator"
manage bootstrap_admin --email "$PANEL_ADMIN_EMAIL"

log "starting processes"
units=(panel.target panel-metrics.service)
for port in $PANEL_WEB_PORTS; do units+=("panel-web@$port.service"); done
for n in $(seq 1 "$PANEL_WORKER_INSTANCES"); do units+=("panel-worker@$n.service"); done
systemctl enable "${units[@]}"
# A re-run (an upgrade) restarts what runs, one by one (systemctl needs root, the panel's
# user only migrated above); then whatever is not running yet starts.
env -C "$PANEL_HOME/app" "${WITH_ENV[@]}" "$PANEL_HOME/venv/bin/python" manage.py upgrade --skip-migrate
systemctl start "${units[@]}"
nginx -t
systemctl reload nginx || systemctl start nginx
log "done: https://$PANEL_DOMAIN/ (sign in with the password printed above)"

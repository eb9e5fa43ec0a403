# System accounts of the hosting panel: one Linux user per customer per server.
# Constant text, run as: sh -c SCRIPT panel-account CMD NAME HOME [DOMAIN [app]]. Every value is an
# argument (validated by the panel: NAME an account name, HOME an absolute path, DOMAIN a
# domain name) or stdin; nothing is evaluated. Exit 0 done, 3 refused (the words say why).
set -eu
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH LC_ALL=C
cmd=$1 name=$2 home=$3
nologin=/usr/sbin/nologin
[ -x "$nologin" ] || nologin=/bin/false

ours() {  # does NAME exist, and is it the panel's (its home is HOME)? 0 ours, 1 absent
  entry=$(getent passwd -- "$name") || return 1
  have=$(printf '%s\n' "$entry" | cut -d: -f6)
  if [ "$have" != "$home" ]; then
    echo "A user $name already exists on this server with home $have: not the panel's." >&2
    exit 3
  fi
  return 0
}

case "$cmd" in
ensure)
  if ! ours; then
    if getent group -- "$name" >/dev/null; then
      echo "A group $name already exists on this server: not the panel's." >&2
      exit 3
    fi
    useradd --no-create-home --home-dir "$home" --shell "$nologin" --user-group -- "$name"
  fi
  mkdir -p -- "$home"
  # The SFTP chroot: root-owned, not writable by the user; the user writes below it.
  chown root:root -- "$home"
  chmod 755 -- "$home"
  mkdir -p -- "$home/sites" "$home/logs" "$home/.ssh" "$home/tmp"
  chown "$name:$name" -- "$home/sites" "$home/.ssh" "$home/tmp"
  chmod 755 -- "$home/sites"
  chmod 700 -- "$home/.ssh" "$home/tmp"
  chown root:"$name" -- "$home/logs"
  chmod 750 -- "$home/logs"
  ;;
site)
  ours || { echo "There is no user $name on this server." >&2; exit 3; }
  dir="$home/sites/$4"
  new=0
  [ -d "$dir/public" ] || new=1
  mkdir -p -- "$dir/public"
  chown "$name:$name" -- "$dir" "$dir/public"
  chmod 755 -- "$dir" "$dir/public"
  if [ "${5:-}" = app ]; then  # an app site's code lives (and runs) here
    mkdir -p -- "$dir/app"
    chown "$name:$name" -- "$dir/app"
    chmod 755 -- "$dir/app"
  fi
  if [ "$new" = 1 ]; then
    cat > "$dir/public/index.html"
    chown "$name:$name" -- "$dir/public/index.html"
    chmod 644 -- "$dir/public/index.html"
  fi
  ;;
rmsite)
  rm -rf -- "$home/sites/$4"
  rm -f -- "$home/logs/$4.access.log" "$home/logs/$4.error.log" "$home/logs/$4.app.log"*
  ;;
lock)
  ours || exit 0
  usermod -L -e 1 -- "$name"
  ;;
unlock)
  ours || { echo "There is no user $name on this server." >&2; exit 3; }
  usermod -e '' -- "$name"
  # A user that never had a password stays without one ("!"): -U would refuse.
  if getent shadow -- "$name" | cut -d: -f2 | grep -q '^!.'; then usermod -U -- "$name"; fi
  ;;
password)
  ours || { echo "There is no user $name on this server." >&2; exit 3; }
  IFS= read -r pass || true
  printf '%s:%s\n' "$name" "$pass" | chpasswd
  ;;
key)
  ours || { echo "There is no user $name on this server." >&2; exit 3; }
  cat > "$home/.ssh/authorized_keys.new"
  chown "$name:$name" -- "$home/.ssh/authorized_keys.new"
  chmod 600 -- "$home/.ssh/authorized_keys.new"
  mv -f -- "$home/.ssh/authorized_keys.new" "$home/.ssh/authorized_keys"
  ;;
remove)
  if ours; then
    pkill -KILL -u "$name" 2>/dev/null || true
    userdel -- "$name"
  fi
  rm -rf -- "$home"
  ;;
du)
  du -sk -- "$home" 2>/dev/null | cut -f1
  ;;
tail)
  # The last lines of a site's logs: DOMAIN, then the number of lines.
  for kind in access error; do
    echo "@@panel-log $kind"
    tail -n "$5" -- "$home/logs/$4.$kind.log" 2>/dev/null || true
  done
  ;;
*)
  echo "unknown command $cmd" >&2
  exit 3
  ;;
esac

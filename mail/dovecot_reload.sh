# Reload Dovecot and prove its auth process reads the new users: `doveadm user` must find
# every address given on stdin (one per changed users file). Args: CONF TIMEOUT
set -u
conf=$1 timeout=$2
users=$(cat)
out=$(doveadm -c "$conf" reload 2>&1) || { echo "dovecot is not running: $out"; exit 3; }
end=$(( $(date +%s) + timeout ))
while :; do
  missing=""
  for u in $users; do
    doveadm -c "$conf" user -f uid "$u" >/dev/null 2>&1 || missing="$missing $u"
  done
  [ -z "$missing" ] && { echo reloaded; exit 0; }
  [ "$(date +%s)" -gt "$end" ] && { echo "dovecot does not know:$missing"; exit 4; }
  sleep 0.1
done

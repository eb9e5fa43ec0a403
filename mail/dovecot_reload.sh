# Reload Dovecot (start it when START is "start" and it does not run) and prove its auth
# process reads the new users: `doveadm user` must find every address given on stdin (one
# per changed users file). Args: CONF TIMEOUT START
set -u
conf=$1 timeout=$2 start=$3
users=$(cat)
# Rolling back a first configuration removes it: the program stays unconfigured and stopped.
if [ "$start" = start ] && [ ! -f "$conf" ]; then echo "dovecot is not configured: not started"; exit 0; fi
if ! out=$(doveadm -c "$conf" reload 2>&1); then
  [ "$start" = start ] || { echo "dovecot is not running: $out"; exit 3; }
  log=$(mktemp) || exit 3
  # The daemon must not hold the caller's pipes open: its words go to a scratch file.
  dovecot -c "$conf" </dev/null >"$log" 2>&1 || { echo "dovecot does not start: $(tail -3 "$log")"; rm -f -- "$log"; exit 4; }
  rm -f -- "$log"
fi
end=$(( $(date +%s) + timeout ))
until doveadm -c "$conf" service status >/dev/null 2>&1; do
  [ "$(date +%s)" -gt "$end" ] && { echo "dovecot does not answer after the reload"; exit 4; }
  sleep 0.1
done
while :; do
  missing=""
  for u in $users; do
    doveadm -c "$conf" user -f uid "$u" >/dev/null 2>&1 || missing="$missing $u"
  done
  [ -z "$missing" ] && { echo reloaded; exit 0; }
  [ "$(date +%s)" -gt "$end" ] && { echo "dovecot does not know:$missing"; exit 4; }
  sleep 0.1
done

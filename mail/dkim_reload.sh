# Make OpenDKIM re-read its configuration, key and signing tables (SIGUSR1), or start it when
# START is "start" and it does not run, and check it is alive afterwards.
# Args: PIDFILE TIMEOUT START CONF
set -u
pidfile=$1 timeout=$2 start=$3 conf=$4
alive() {
  pid=$(cat -- "$pidfile" 2>/dev/null) || return 1
  case "$pid" in ''|*[!0-9]*) return 1;; esac
  st=$(ps -o stat= -p "$pid" 2>/dev/null) && case "$st" in Z*) return 1;; esac
}
# Rolling back a first configuration removes it: the program stays unconfigured and stopped.
if [ "$start" = start ] && [ ! -f "$conf" ]; then echo "opendkim is not configured: not started"; exit 0; fi
if alive; then
  kill -USR1 "$pid" || exit 3
  sleep 0.5
  alive || { echo "opendkim stopped after the reload"; exit 4; }
elif [ "$start" = start ]; then
  mkdir -p -- "${pidfile%/*}"
  log=$(mktemp) || exit 3
  # The daemon must not hold the caller's pipes open: its words go to a scratch file.
  opendkim -x "$conf" </dev/null >"$log" 2>&1 || { echo "opendkim does not start: $(tail -3 "$log")"; rm -f -- "$log"; exit 4; }
  out=$(tail -3 "$log"); rm -f -- "$log"
  end=$(( $(date +%s) + timeout ))
  until alive; do
    [ "$(date +%s)" -gt "$end" ] && { echo "opendkim was started but does not run: $out"; exit 4; }
    sleep 0.1
  done
else
  [ -f "$pidfile" ] || { echo "opendkim is not running (no pid file $pidfile)"; exit 3; }
  echo "opendkim is not running (no live process $(cat -- "$pidfile" 2>/dev/null))"; exit 3
fi
echo reloaded

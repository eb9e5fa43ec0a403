# Make OpenDKIM re-read its configuration, key and signing tables (SIGUSR1) and check it
# is still alive afterwards. Args: PIDFILE TIMEOUT
set -u
pidfile=$1 timeout=$2
pid=$(cat -- "$pidfile" 2>/dev/null) || { echo "opendkim is not running (no pid file $pidfile)"; exit 3; }
case "$pid" in ''|*[!0-9]*) echo "$pidfile does not hold a pid"; exit 3;; esac
alive() { st=$(ps -o stat= -p "$pid" 2>/dev/null) && case "$st" in Z*) return 1;; esac; }
alive || { echo "opendkim is not running (no live process $pid)"; exit 3; }
kill -USR1 "$pid" || exit 3
sleep 0.5
alive || { echo "opendkim stopped after the reload"; exit 4; }
echo reloaded

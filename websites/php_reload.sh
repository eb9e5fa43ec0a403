# Reload PHP-FPM (USR2 to the master) and wait until a master is alive again and every socket
# given accepts a connection (curl's exit 7: nothing listens). A daemonizing master re-execs
# into a new pid, so the pid file is read again on every check. Args: PIDFILE TIMEOUT SOCKET...
set -u
pidfile=$1 timeout=$2
sockets=$(cat)
master() { cat -- "$pidfile" 2>/dev/null; }
alive() {
  p=$(master) && case "$p" in ''|*[!0-9]*) return 1;; esac
  st=$(ps -o stat= -p "$p" 2>/dev/null) && case "$st" in Z*) return 1;; esac
}
alive || { echo "php-fpm is not running (no live master in $pidfile)"; exit 3; }
kill -USR2 "$(master)" || exit 3
end=$(( $(date +%s) + timeout ))
while :; do
  sleep 0.1
  missing=""
  if alive; then
    for sock in $sockets; do
      curl -s -m 2 --unix-socket "$sock" -o /dev/null http://pool/ 2>/dev/null
      [ $? -eq 7 ] && missing="$missing $sock"
    done
    [ -z "$missing" ] && { echo reloaded; exit 0; }
  fi
  if [ "$(date +%s)" -gt "$end" ]; then
    alive || { echo "no php-fpm master came back after the reload"; exit 4; }
    echo "these sockets take no connections:$missing"; exit 4
  fi
done

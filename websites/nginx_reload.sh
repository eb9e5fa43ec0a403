# Reload nginx and prove it took effect: HUP the master, then wait for a new worker
# generation, or an [emerg]/[alert]/[crit] in the error log since the signal.
# Args: PIDFILE ERRORLOG TIMEOUT. Exit 0 reloaded, 3 not running, 4 did not take effect.
set -u
pidfile=$1 errlog=$2 timeout=$3
pid=$(cat -- "$pidfile" 2>/dev/null) || { echo "nginx is not running (no pid file $pidfile)"; exit 3; }
case "$pid" in ''|*[!0-9]*) echo "$pidfile does not hold a pid"; exit 3;; esac
alive() { st=$(ps -o stat= -p "$pid" 2>/dev/null) && case "$st" in Z*) return 1;; esac; }
alive || { echo "nginx is not running (no live process $pid from $pidfile)"; exit 3; }
old=$(mktemp) && trap 'rm -f -- "$old"' EXIT
ps -o pid= --ppid "$pid" > "$old"
size=$(stat -c %s -- "$errlog" 2>/dev/null || echo 0)
kill -HUP "$pid" || exit 3
end=$(( $(date +%s) + timeout ))
while :; do
  errors=$(tail -c +$((size + 1)) -- "$errlog" 2>/dev/null | grep -E '\[(emerg|alert|crit)\]')
  if [ -n "$errors" ]; then
    # nginx may still be at it (a failed bind() is retried for seconds, logging each try):
    # report once the log has been quiet for a while, so the next reload starts clean.
    last=-1 quiet=0
    while [ "$quiet" -lt 8 ] && [ "$(date +%s)" -le "$end" ]; do
      now=$(stat -c %s -- "$errlog" 2>/dev/null || echo 0)
      if [ "$now" = "$last" ]; then quiet=$((quiet + 1)); else quiet=0; last=$now; fi
      sleep 0.1
    done
    tail -c +$((size + 1)) -- "$errlog" 2>/dev/null | grep -E '\[(emerg|alert|crit)\]' | tail -n 3
    exit 4
  fi
  if ps -o pid= --ppid "$pid" | awk 'NR == FNR { o[$1] = 1; next } !($1 in o) { f = 1 } END { exit !f }' "$old" -; then
    # New workers run; new connections reach only them once every old worker has exited or
    # stopped accepting (its title then says "shutting down").
    while read -r w; do
      while args=$(ps -o args= -p "$w" 2>/dev/null) && [ -n "$args" ]; do
        case "$args" in *"shutting down"*) break;; esac
        [ "$(date +%s)" -le "$end" ] || { echo "old worker $w does not stop"; exit 4; }
        sleep 0.02
      done
    done < "$old"
    echo reloaded; exit 0
  fi
  alive || { echo "the nginx master process $pid exited"; exit 4; }
  [ "$(date +%s)" -le "$end" ] || { echo "no new worker processes within ${timeout}s"; exit 4; }
  sleep 0.05
done

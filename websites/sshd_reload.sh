# Reload sshd after a change of its included files: HUP the listener (it re-executes itself
# with the same pid) and wait until it is alive again. Args: PIDFILE TIMEOUT.
# Exit 0 reloaded, 3 not running, 4 did not come back.
set -u
pidfile=$1 timeout=$2
pid=$(cat -- "$pidfile" 2>/dev/null) || { echo "sshd is not running (no pid file $pidfile)"; exit 3; }
case "$pid" in ''|*[!0-9]*) echo "$pidfile does not hold a pid"; exit 3;; esac
alive() { st=$(ps -o stat= -p "$pid" 2>/dev/null) && case "$st" in Z*) return 1;; esac; }
alive || { echo "sshd is not running (no live process $pid from $pidfile)"; exit 3; }
kill -HUP "$pid" || exit 3
end=$(( $(date +%s) + timeout ))
sleep 0.2
while :; do
  if alive && grep -q sshd "/proc/$pid/cmdline" 2>/dev/null; then exit 0; fi
  [ "$(date +%s)" -gt "$end" ] && { echo "sshd did not come back after the reload"; exit 4; }
  sleep 0.1
done

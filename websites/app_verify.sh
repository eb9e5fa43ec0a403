# Wait until each app named on stdin is where it should be: lines "NAME PORT WANT LOG", WANT
# run (RUNNING and something accepts on 127.0.0.1:PORT), stop (not running) or gone (no such
# program). Constant text: sh -c SCRIPT app-verify MANAGER TIMEOUT [SUPERVISORCTL-ARGV...];
# MANAGER is supervisord or systemd. Prints "NAME: why" for each app that is not, exits 1.
manager=$1 timeout=$2
shift 2
bad=0
state_of() {  # NAME [SUPERVISORCTL-ARGV...]
  n=$1
  shift
  if [ "$manager" = systemd ]; then
    if ! systemctl cat -- "$n.service" >/dev/null 2>&1 </dev/null; then echo GONE; return; fi
    s=$(systemctl show -p SubState --value -- "$n.service" 2>/dev/null </dev/null)
    a=$(systemctl show -p ActiveState --value -- "$n.service" 2>/dev/null </dev/null)
    case "$a:$s" in
      active:running) echo RUNNING ;;
      activating:auto-restart|failed:*) echo BACKOFF ;;
      activating:*) echo STARTING ;;
      *) echo STOPPED ;;
    esac
    return
  fi
  line=$("$@" status "$n" 2>&1 </dev/null)
  case "$line" in
    *"no such process"*) echo GONE ;;
    *) printf '%s\n' "$line" | awk 'NR == 1 { print $2 }' ;;
  esac
}
while read -r name port want log; do
  end=$(( $(date +%s) + timeout ))
  while :; do
    state=$(state_of "$name" "$@")
    verdict=""
    case "$want:$state" in
      run:RUNNING)
        curl -s -o /dev/null -m 2 "http://127.0.0.1:$port/" </dev/null
        [ $? -ne 7 ] && verdict=ok ;;
      run:BACKOFF|run:FATAL|run:EXITED) verdict="crashed ($state)" ;;
      stop:STOPPED|stop:EXITED|stop:FATAL|stop:GONE) verdict=ok ;;
      gone:GONE) verdict=ok ;;
    esac
    if [ -z "$verdict" ] && [ "$(date +%s)" -ge "$end" ]; then
      case "$want:$state" in
        run:RUNNING) verdict="runs, but nothing accepts connections on 127.0.0.1:$port after ${timeout}s (does the app listen on \$PORT and \$HOST?)" ;;
        *) verdict="still ${state:-unknown} after ${timeout}s (wanted: $want)" ;;
      esac
    fi
    [ -n "$verdict" ] && break
    sleep 0.2
  done
  [ "$verdict" = ok ] && continue
  bad=1
  echo "$name: $verdict"
  if [ "$want" = run ] && [ -f "$log" ]; then
    echo "$name: the app's last words:"
    tail -n 8 -- "$log" | sed "s/^/$name:   /"
  fi
done
exit "$bad"

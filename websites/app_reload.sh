# supervisord: read the changed program files and apply them (added, changed = restarted,
# removed = stopped). Constant text: sh -c SCRIPT supervisor-reload SUPERVISORCTL-ARGV...
# Exit non-zero when supervisord refuses or cannot be reached, with its words.
out=$("$@" reread 2>&1 </dev/null)
code=$?
printf '%s\n' "$out"
case "$out" in *ERROR*|*error:*) exit 1 ;; esac
[ "$code" -eq 0 ] || exit 1
out=$("$@" update 2>&1 </dev/null)
code=$?
printf '%s\n' "$out"
case "$out" in *ERROR*|*error:*) exit 1 ;; esac
exit "$code"

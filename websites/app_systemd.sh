# systemd: load the changed units and bring each app named on stdin where it should be:
# lines "NAME WANT", WANT run (enabled, restarted), stop (disabled, stopped), gone (stopped;
# its unit file is removed already) or reset (rolled back: restarted if its previous file is
# back and enabled, else stopped). Constant text: sh -c SCRIPT app-systemd.
set -u
names=""
while read -r name want; do names="$names $name:$want"; done
for item in $names; do  # stop removed ones while systemd still knows them
  name=${item%%:*} want=${item##*:}
  [ "$want" = gone ] && systemctl disable --now -- "$name.service" >/dev/null 2>&1
done
systemctl daemon-reload || exit 1
bad=0
for item in $names; do
  name=${item%%:*} want=${item##*:}
  case "$want" in
    run) systemctl enable -- "$name.service" && systemctl restart -- "$name.service" || bad=1 ;;
    stop) systemctl disable --now -- "$name.service" || bad=1 ;;
    reset)
      if systemctl cat -- "$name.service" >/dev/null 2>&1; then
        if systemctl is-enabled --quiet -- "$name.service"; then
          systemctl restart -- "$name.service" || bad=1
        fi
      else
        systemctl stop -- "$name.service" >/dev/null 2>&1
      fi
      ;;
  esac
done
exit "$bad"

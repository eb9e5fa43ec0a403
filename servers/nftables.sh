# Commit-confirmed nftables loading. Modes: start (arm the revert, load), revert (the detached
# timer), confirm. Args: MODE SELF STATE RUN FILE BACKUP SECONDS (SELF: this script's text).
set -u
mode=$1 self=$2 state=$3 run=$4 file=$5 backup=$6 seconds=$7
confirm="$state/nft-confirm.$run" pidf="$state/nft-revert.$run.pid" done="$state/nft-reverted.$run"
load() {
  if [ -e "$file" ]; then nft -f "$file"
  else nft delete table inet hosting_panel 2>/dev/null || true; fi
}
case "$mode" in
start)
  rm -f -- "$confirm" "$done"
  setsid -f sh -c "$self" nft revert "$self" "$state" "$run" "$file" "$backup" "$seconds" \
    </dev/null >/dev/null 2>&1 || { echo "cannot arm the revert timer"; exit 3; }
  i=0; while [ ! -s "$pidf" ] && [ $i -lt 50 ]; do sleep 0.02; i=$((i + 1)); done
  [ -s "$pidf" ] || { echo "the revert timer did not start"; exit 3; }
  if ! out=$(load 2>&1); then
    touch -- "$confirm"; kill "$(cat -- "$pidf")" 2>/dev/null; rm -f -- "$pidf" "$confirm"
    echo "$out"; exit 4
  fi
  echo loaded
  ;;
revert)
  echo $$ > "$pidf"
  sleep "$seconds"
  [ -e "$confirm" ] && { rm -f -- "$pidf"; exit 0; }
  if [ -n "$backup" ] && [ -e "$backup" ]; then ln -f -- "$backup" "$file"; else rm -f -- "$file"; fi
  load >/dev/null 2>&1
  echo reverted > "$done"
  rm -f -- "$pidf"
  ;;
confirm)
  touch -- "$confirm"
  [ -s "$pidf" ] && kill "$(cat -- "$pidf")" 2>/dev/null
  rm -f -- "$pidf" "$confirm"
  if [ -e "$done" ]; then rm -f -- "$done"; echo "too late: the server had already reverted"; exit 4; fi
  echo confirmed
  ;;
esac

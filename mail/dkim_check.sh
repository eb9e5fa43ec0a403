# Validate a run's OpenDKIM files: every staged private key must parse (openssl), then
# `opendkim -n` checks the configuration as it will be (staged, else live), with the
# policy hooks it names as they will be (staged, else live: opendkim compiles them).
# Args: CONF KEY_DIR RUN_ID DKIM_DIR
set -u
conf=$1 dir=$2 run=$3 dkim=$4
staged="$dir/.panel-new-$run"
if [ -d "$staged" ]; then
  for f in "$staged"/*; do
    [ -f "$f" ] || continue
    out=$(openssl pkey -in "$f" -noout 2>&1) || { echo "${f##*/}: not a private key: $out"; exit 1; }
  done
fi
new="${conf%/*}/.panel-new-$run/${conf##*/}"
[ -f "$new" ] && conf=$new
hooks="$dkim/.panel-new-$run"
tmp=""
if [ -f "$hooks/panel-setup.lua" ] || [ -f "$hooks/panel-final.lua" ]; then
  tmp=$(mktemp "${TMPDIR:-/tmp}/panel-dkim-check.XXXXXX") || exit 1
  trap 'rm -f "$tmp"' EXIT
  while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in
      SetupPolicyScript\ *|FinalPolicyScript\ *)
        path=${line#* }
        [ -f "$hooks/${path##*/}" ] && [ "${path%/*}" = "$dkim" ] && line="${line%% *} $hooks/${path##*/}"
        ;;
    esac
    printf '%s\n' "$line"
  done < "$conf" > "$tmp"
  conf=$tmp
fi
out=$(opendkim -n -x "$conf" 2>&1) || { echo "opendkim: $out"; exit 1; }
exit 0

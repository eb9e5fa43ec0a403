# Validate a run's OpenDKIM files: every staged private key must parse (openssl), then
# `opendkim -n` checks the configuration as it will be (staged, else live).
# Args: CONF KEY_DIR RUN_ID
set -u
conf=$1 dir=$2 run=$3
staged="$dir/.panel-new-$run"
if [ -d "$staged" ]; then
  for f in "$staged"/*; do
    [ -f "$f" ] || continue
    out=$(openssl pkey -in "$f" -noout 2>&1) || { echo "${f##*/}: not a private key: $out"; exit 1; }
  done
fi
new="${conf%/*}/.panel-new-$run/${conf##*/}"
[ -f "$new" ] && conf=$new
out=$(opendkim -n -x "$conf" 2>&1) || { echo "opendkim: $out"; exit 1; }
exit 0

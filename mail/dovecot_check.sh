# Validate a run's Dovecot files (the staged ones): every users file line a comment or a
# passwd-file entry of the shape the panel writes, then `doveconf -n` on the main
# configuration as it will be (staged, else live), then `sievec` compiles every staged
# auto-responder (a script Pigeonhole refuses never goes live).
# Args: CONF USERS_DIR RUN_ID SIEVE_DIR
set -u
conf=$1 dir=$2 run=$3 sieve=$4
staged="$dir/.panel-new-$run"
if [ -d "$staged" ]; then
  for f in "$staged"/*; do
    [ -f "$f" ] || continue
    bad=$(grep -Evn -e '^# ' -e '^[a-z0-9._-]+@[a-z0-9.-]+:\{SHA512-CRYPT\}\$6\$[./A-Za-z0-9$=]+::::/[A-Za-z0-9._/-]+::[A-Za-z0-9_=*:. ]*$' "$f" | head -3)
    [ -z "$bad" ] || { echo "${f##*/}: not a users file line: $bad"; exit 1; }
  done
fi
new="${conf%/*}/.panel-new-$run/${conf##*/}"
[ -f "$new" ] && conf=$new
# -x reads the files the configuration names (certificate, key): a missing one fails here.
out=$(doveconf -n -x -c "$conf" 2>&1 >/dev/null) || { echo "doveconf: $out"; exit 1; }
staged="$sieve/.panel-new-$run"
if [ -d "$staged" ]; then
  bin=$(mktemp "${TMPDIR:-/tmp}/panel-sievec.XXXXXX") || exit 1
  trap 'rm -f "$bin"' EXIT
  for f in "$staged"/*.sieve; do
    [ -f "$f" ] || continue
    out=$(sievec -c "$conf" "$f" "$bin" 2>&1) || {
      echo "${f##*/}: sievec: $(printf '%s' "$out" | head -5)"; exit 1; }
  done
fi
exit 0

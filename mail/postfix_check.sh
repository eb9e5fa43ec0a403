# Validate a run's Postfix files before they are swapped in: each map (the staged one, else
# the live one) is compiled by postmap into a scratch directory, and `postfix check` checks
# the instance with main.cf and master.cf as they will be (staged, else live).
# Args: CONFIG_DIR MAP_DIR RUN_ID MAP...
set -u
confdir=$1 mapdir=$2 run=$3
shift 3
tmp=$(mktemp -d) || exit 3
trap 'rm -rf -- "$tmp"' EXIT
check=$confdir
if [ -f "$confdir/.panel-new-$run/main.cf" ] || [ -f "$confdir/.panel-new-$run/master.cf" ]; then
  check="$tmp/conf"
  mkdir -- "$check" || exit 3
  for f in main.cf master.cf; do
    src="$confdir/.panel-new-$run/$f"
    [ -f "$src" ] || src="$confdir/$f"
    cp -- "$src" "$check/$f" || exit 3
  done
  out=$(postconf -c "$check" -n 2>&1 >/dev/null)
  case "$out" in *warning*|*fatal*|*error*) echo "main.cf: $out"; exit 1;; esac
  for key in smtpd_tls_cert_file smtpd_tls_key_file; do
    f=$(postconf -c "$check" -xh "$key" 2>/dev/null)
    [ -z "$f" ] || [ -r "$f" ] || { echo "main.cf: $key $f cannot be read"; exit 1; }
  done
fi
for name in "$@"; do
  src="$mapdir/.panel-new-$run/$name"
  [ -f "$src" ] || src="$mapdir/$name"
  if [ -f "$src" ]; then cp -- "$src" "$tmp/$name" || exit 3; else : > "$tmp/$name"; fi
  out=$(postmap -c "$check" "hash:$tmp/$name" 2>&1) || { echo "$name: $out"; exit 1; }
  case "$out" in *warning*|*fatal*) echo "$name: $out"; exit 1;; esac
done
out=$(postfix -c "$check" check 2>&1) || { echo "postfix check: $out"; exit 1; }
case "$out" in *fatal*|*error*) echo "postfix check: $out"; exit 1;; esac
exit 0

# Validate a run's Postfix maps before they are swapped in: each map (the staged one, else
# the live one) is compiled by postmap into a scratch directory, and `postfix check` checks
# the instance. Args: CONFIG_DIR MAP_DIR RUN_ID MAP...
set -u
confdir=$1 mapdir=$2 run=$3
shift 3
tmp=$(mktemp -d) || exit 3
trap 'rm -rf -- "$tmp"' EXIT
for name in "$@"; do
  src="$mapdir/.panel-new-$run/$name"
  [ -f "$src" ] || src="$mapdir/$name"
  if [ -f "$src" ]; then cp -- "$src" "$tmp/$name" || exit 3; else : > "$tmp/$name"; fi
  out=$(postmap -c "$confdir" "hash:$tmp/$name" 2>&1) || { echo "$name: $out"; exit 1; }
  case "$out" in *warning*|*fatal*) echo "$name: $out"; exit 1;; esac
done
out=$(postfix -c "$confdir" check 2>&1) || { echo "postfix check: $out"; exit 1; }
case "$out" in *fatal*|*error*) echo "postfix check: $out"; exit 1;; esac
exit 0

# Compile the swapped-in maps and reload Postfix; succeed only when every map's database is
# at least as new as its source and the master runs. Args: CONFIG_DIR MAP_DIR TIMEOUT MAP...
set -u
confdir=$1 mapdir=$2 timeout=$3
shift 3
for name in "$@"; do
  [ -f "$mapdir/$name" ] || : > "$mapdir/$name"
  out=$(postmap -c "$confdir" "hash:$mapdir/$name" 2>&1) || { echo "postmap $name: $out"; exit 4; }
  [ "$mapdir/$name.db" -nt "$mapdir/$name" ] || [ ! "$mapdir/$name" -nt "$mapdir/$name.db" ] \
    || { echo "$name.db is older than $name"; exit 4; }
done
postfix -c "$confdir" status >/dev/null 2>&1 || { echo "postfix is not running"; exit 3; }
out=$(postfix -c "$confdir" reload 2>&1) || { echo "postfix reload: $out"; exit 4; }
end=$(( $(date +%s) + timeout ))
until postfix -c "$confdir" status >/dev/null 2>&1; do
  [ "$(date +%s)" -gt "$end" ] && { echo "postfix did not come back after the reload"; exit 4; }
  sleep 0.1
done
echo reloaded

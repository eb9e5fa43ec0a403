# Compile the swapped-in maps and reload Postfix (start it when START is "start" and it does
# not run: a server just prepared for mail); succeed only when every map's database is at
# least as new as its source and the master runs. Args: CONFIG_DIR MAP_DIR TIMEOUT START MAP...
set -u
confdir=$1 mapdir=$2 timeout=$3 start=$4
shift 4
for name in "$@"; do
  [ -f "$mapdir/$name" ] || : > "$mapdir/$name"
  out=$(postmap -c "$confdir" "hash:$mapdir/$name" 2>&1) || { echo "postmap $name: $out"; exit 4; }
  [ "$mapdir/$name.db" -nt "$mapdir/$name" ] || [ ! "$mapdir/$name" -nt "$mapdir/$name.db" ] \
    || { echo "$name.db is older than $name"; exit 4; }
done
# Rolling back a first configuration removes it: the program stays unconfigured and stopped.
if [ "$start" = start ] && [ ! -f "$confdir/main.cf" ]; then echo "postfix is not configured: not started"; exit 0; fi
if postfix -c "$confdir" status >/dev/null 2>&1; then
  out=$(postfix -c "$confdir" reload 2>&1) || { echo "postfix reload: $out"; exit 4; }
elif [ "$start" = start ]; then
  out=$(postfix -c "$confdir" start 2>&1) || { echo "postfix start: $out"; exit 4; }
else
  echo "postfix is not running"; exit 3
fi
end=$(( $(date +%s) + timeout ))
until postfix -c "$confdir" status >/dev/null 2>&1; do
  [ "$(date +%s)" -gt "$end" ] && { echo "postfix did not come back after the reload: $out"; exit 4; }
  sleep 0.1
done
echo reloaded

# Test fail2ban's configuration with the panel's new jail file in place, on a copy of the
# configuration directory (fail2ban reads jail.d/ by fixed names: it has no include to
# point elsewhere). Args: CONF_DIR FILE_NAME MODE(write|remove) CLIENT... ; stdin: the file.
set -u
conf=$1 name=$2 mode=$3
shift 3
tmp=$(mktemp -d) || exit 1
trap 'rm -rf -- "$tmp"' EXIT
cp -R -- "$conf/." "$tmp/" || exit 1
mkdir -p -- "$tmp/jail.d"
rm -f -- "$tmp/jail.d/$name"
if [ "$mode" = write ]; then cat > "$tmp/jail.d/$name"; fi
out=$("$@" -c "$tmp" -t 2>&1)
code=$?
printf '%s\n' "$out" | sed "s|$tmp|$conf|g"
exit $code

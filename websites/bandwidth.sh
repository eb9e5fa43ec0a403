# Count the bytes sent in sites' access logs since the last count. stdin: one line per site,
# "ID PATH INODE OFFSET" (INODE "-" the first time); stdout: "ID INODE SIZE BYTES" (INODE "-"
# while the log does not exist). Rotation-safe: when PATH is a new file (another inode, or
# shorter than OFFSET), the rest of the old one is read from PATH.1 when that is it, and the
# new file from its start. Lines are nginx's "combined" format: ... "REQUEST" STATUS BYTES ...
set -u
LC_ALL=C
export LC_ALL
count() {
  awk 'match($0, /" [0-9][0-9][0-9] [0-9]+ /) { s += substr($0, RSTART + 6, RLENGTH - 7) }
       END { printf "%.0f\n", s + 0 }'
}
while read -r id path inode offset; do
  if [ ! -f "$path" ]; then echo "$id - 0 0"; continue; fi
  cur=$(stat -c %i -- "$path") && size=$(stat -c %s -- "$path") || { echo "$id - 0 0"; continue; }
  old=0
  if [ "$cur" != "$inode" ] || [ "$size" -lt "$offset" ]; then
    if [ "$inode" != "-" ] && [ -f "$path.1" ] && [ "$(stat -c %i -- "$path.1")" = "$inode" ]; then
      old=$(tail -c +$((offset + 1)) -- "$path.1" | count)
    fi
    offset=0
  fi
  new=$(tail -c +$((offset + 1)) -- "$path" | head -c $((size - offset)) | count)
  echo "$id $cur $size $((old + new))"
done

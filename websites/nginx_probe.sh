# Ask nginx, by Host, whether each changed site serves its new configuration: the probe URL
# must answer the expected revision, gateway URLs must not answer 502/504. Retries briefly
# (a reload's new workers may take a moment to accept). Prints "FAIL url code revision" for
# each failure and exits 1 if there is any.
# Args: ADDRESS PORT. Stdin: lines "URL KIND EXPECTED" (KIND probe or gateway).
set -u
addr=$1 port=$2
list=$(mktemp) && conf=$(mktemp) && trap 'rm -f -- "$list" "$conf" "$list.next"' EXIT
cat > "$list"
try=0
while :; do
  # URLs go to curl in a config file: any number of them, no command-line limit.
  awk '{ print "url = \"" $1 "\""; print "output = \"/dev/null\"" }' "$list" > "$conf"
  [ -s "$conf" ] || exit 0
  got=$(curl -s --parallel --parallel-max 32 -m 5 --connect-to "::$addr:$port" -K "$conf" \
    -w '%{http_code} %header{x-panel-revision} %{url_effective}\n')
  fails=$(printf '%s\n' "$got" | awk 'NR == FNR { kind[$1] = $2; want[$1] = $3; next }
    NF >= 2 { url = $NF; code = $1; rev = (NF >= 3) ? $2 : "-"; seen[url] = 1
      if (kind[url] == "probe" && (code == "000" || rev != want[url])) print "FAIL " url " " code " " rev
      if (kind[url] == "gateway" && (code == "502" || code == "504")) print "FAIL " url " " code " -" }
    END { for (u in kind) if (!(u in seen)) print "FAIL " u " 000 -" }' "$list" -)
  [ -z "$fails" ] && exit 0
  try=$((try + 1))
  if [ "$try" -ge 3 ]; then printf '%s\n' "$fails"; exit 1; fi
  printf '%s\n' "$fails" | awk 'NR == FNR { r[$2] = 1; next } ($1 in r)' - "$list" > "$list.next"
  mv -f -- "$list.next" "$list"
  sleep 0.2
done

# Ask nginx, by Host, whether each changed site serves its new configuration: the probe URL
# must answer the expected revision, gateway URLs must not answer 502/504. Retries briefly
# (a reload's new workers may take a moment to accept). Prints "FAIL url code revision" for
# each failure, exits 1 if there is any.
# Args: ADDRESS PORT then groups of three: URL KIND EXPECTED (KIND probe or gateway).
set -u
addr=$1 port=$2
shift 2
list=$(mktemp) && trap 'rm -f -- "$list"' EXIT
while [ $# -ge 3 ]; do printf '%s %s %s\n' "$1" "$2" "$3" >> "$list"; shift 3; done
try=0
while :; do
  set --
  while read -r url kind want; do set -- "$@" -o /dev/null "$url"; done < "$list"
  [ $# -gt 0 ] || exit 0
  got=$(curl -s --parallel --parallel-max 32 -m 5 --connect-to "::$addr:$port" \
    -w '%{http_code} %header{x-panel-revision} %{url_effective}\n' "$@")
  fails=$(printf '%s\n' "$got" | awk 'NR == FNR { kind[$1] = $2; want[$1] = $3; next }
    NF >= 2 { url = $NF; code = $1; rev = (NF >= 3) ? $2 : "-"
      if (kind[url] == "probe" && (code == "000" || rev != want[url])) print "FAIL " url " " code " " rev
      if (kind[url] == "gateway" && (code == "502" || code == "504")) print "FAIL " url " " code " -"
      seen[url] = 1 }
    END { for (u in kind) if (!(u in seen)) print "FAIL " u " 000 -" }' "$list" -)
  [ -z "$fails" ] && exit 0
  try=$((try + 1))
  if [ "$try" -ge 3 ]; then printf '%s\n' "$fails"; exit 1; fi
  printf '%s\n' "$fails" | awk '{ print $2 }' > "$list.retry"
  awk 'NR == FNR { r[$1] = 1; next } ($1 in r)' "$list.retry" "$list" > "$list.next"
  mv -f -- "$list.next" "$list"; rm -f -- "$list.retry"
  sleep 0.2
done

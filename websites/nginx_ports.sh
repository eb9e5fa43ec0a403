# Does a program other than nginx listen where a changed vhost wants to? (`nginx -t` ignores
# bind errors; the reload would fail on them.) Prints "CONFLICT UNIT LISTEN PROGRAM" for each
# and exits 1 if there is any. Stdin: lines "UNIT LISTEN" (a port, or address:port).
set -u
taken=$(ss -Hltnp 2>/dev/null) || exit 0   # no ss: the reload check still catches it
export taken
awk '
  BEGIN { n = split(ENVIRON["taken"], lines, "\n")
    for (i = 1; i <= n; i++) { if (lines[i] ~ /"nginx"/) continue
      split(lines[i], f, " "); prog = "another program"
      if (match(lines[i], /users:\(\("[^"]+"/)) prog = substr(lines[i], RSTART + 9, RLENGTH - 10)
      held[f[4]] = prog } }
  { unit = $1; listen = $2; who = ""
    if (index(listen, ":") == 0) {
      for (a in held) if (a ~ (":" listen "$")) who = held[a]
    } else {
      port = listen; sub(/.*:/, "", port)
      if (listen in held) who = held[listen]
      else if (("0.0.0.0:" port) in held) who = held["0.0.0.0:" port]
      else if (("*:" port) in held) who = held["*:" port]
    }
    if (who != "") { print "CONFLICT " unit " " listen " " who; bad = 1 } }
  END { exit bad }'

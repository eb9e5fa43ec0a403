# The apply engine's helper on a managed server (POSIX sh + coreutils, findutils, tar, awk:
# all in Debian's required set). Sent with every call as `sh -c SCRIPT panel-apply CMD ...`;
# it is constant text: every value it acts on arrives as an argument, on stdin or in a file
# of the run, never as code.
#
# Layout: STATE/lock (run id + time, refreshed by every call), STATE/pending (a run whose
# files were swapped but whose reloads are not yet verified), STATE/runs/RUN/ (the run's list
# and records), STATE/manifest/XX.tsv (what the panel wrote, sharded by path hash).
# Beside each target directory DIR: DIR/.panel-new-RUN/ (staged files), DIR/.panel-old-RUN/
# (hard-linked backups: same inode, so content, mode and owner come back exactly),
# DIR/.panel-test-RUN-NAME/ (a symlink tree for validation). Includes must use a suffix glob
# such as *.conf so none of these is ever picked up by a live configuration.
set -u
umask 077
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH LC_ALL=C
cmd=$1 state=$2 run=$3
shift 3
me="$state/runs/$run"
STALE=${PANEL_LOCK_STALE:-60}

die() { echo "$*" >&2; exit 3; }

# Records go through cat, whose errors keep the system's words (No space left on device).
put() { printf '%s\n' "$@" | cat > "$target"; }

take_lock() {  # $1: a dead run whose lock may be taken over at once ("" for none)
  mkdir -p -m 700 -- "$state" "$state/runs" || die "cannot create $state"
  now=$(date +%s)
  if (set -C; : > "$state/lock") 2>/dev/null; then
    target="$state/lock" put "$run $now" || { rm -f -- "$state/lock"; die "cannot take the lock"; }
    return 0
  fi
  holder="" since=0
  read -r holder since < "$state/lock" 2>/dev/null || true
  if [ "$holder" = "$run" ]; then touch -- "$state/lock"; return 0; fi
  mtime=$(stat -c %Y -- "$state/lock" 2>/dev/null || echo 0)
  if [ -z "$holder" ] || [ "$holder" = "${1:-}" ] || [ $((now - mtime)) -gt "$STALE" ]; then
    target="$state/lock.$run" put "$run $now" && mv -f -- "$state/lock.$run" "$state/lock" \
      || { rm -f -- "$state/lock.$run"; die "cannot take the lock"; }
    read -r holder since < "$state/lock" 2>/dev/null || true
    [ "$holder" = "$run" ] && return 0
  fi
  echo "locked by $holder since $since" >&2
  exit 75
}

own_lock() {
  holder=""
  read -r holder _rest < "$state/lock" 2>/dev/null || true
  [ "$holder" = "$run" ] || { echo "the lock on $state is no longer held by run $run" >&2; exit 75; }
  touch -- "$state/lock"
}

# Directories that hold targets: every existing ancestor must be a real directory owned by
# root and not writable by others (unless sticky), so no one else can swap in a symlink and
# make these root-run renames land elsewhere.
check_dirs() {
  awk '{ d = $0; while (d != "" && d != "/") { if (!(d in seen)) { seen[d] = 1; print d }
         sub(/\/[^\/]*$/, "", d) } }' "$me/dirs" > "$me/ancestors"
  xargs -r -d '\n' stat -c '%F|%u|%a|%n' -- < "$me/ancestors" 2>/dev/null | awk -F'|' '
    $1 == "symbolic link" { print $4 " is a symbolic link"; bad = 1; next }
    $1 != "directory" { print $4 " is not a directory"; bad = 1; next }
    $2 != "0" { print $4 " is not owned by root"; bad = 1; next }
    { m = $3; n = length(m); g = substr(m, n - 1, 1) + 0; o = substr(m, n, 1) + 0
      s = (n == 4) ? substr(m, 1, 1) + 0 : 0
      if ((g % 4 >= 2 || o % 4 >= 2) && s % 2 == 0) { print $4 " is writable by others"; bad = 1 } }
    END { exit bad }' >&2 || exit 3
}

# Per target directory: lists of names, built from the run's list (TSV: op sha mode owner
# group path; op w = write, r = remove), leaving out the held-back paths in $me/held.
split_by_dir() {
  awk -F'\t' -v me="$me" '
    FILENAME == me "/held" { held[$0] = 1; next }
    ($6 in held) { next }
    { p = $6; d = p; sub(/\/[^\/]*$/, "", d); n = substr(p, length(d) + 2)
      if (!(d in idx)) { idx[d] = ++k; print d > (me "/swapdirs") }
      f = me "/d" idx[d]; print n > (f "." $1) }' \
    "$me/held" "$me/list"
}

# Validate an include directory's files without copying or linking any: a copy of the main
# configuration whose include line is expanded into one include per file, in the order the
# glob would give: the live files, with this run's new files in place of (or beside) them,
# its removals left out, held-back paths keeping what is live. Then the program's own test.
# Prints the tool's output, then "@@panel-exit CODE" (2: the main configuration does not
# include the directory). Held-back paths are in $me/held.NAME.
# Args: NAME MAIN_CONF INCLUDE_DIR PATTERN STAGED_CONF -- ARGV...
run_tree() {
  name=$1 main=$2 dir=$3 pattern=$4 conf=$5
  shift 6
  [ -f "$me/held.$name" ] || : > "$me/held.$name"
  find "$dir" -maxdepth 1 -name "$pattern" ! -name '.*' > "$me/live.$name"
  awk -F'\t' -v dir="$dir" -v me="$me" -v run="$run" -v name="$name" '
    FILENAME == me "/held." name { held[$0] = 1; next }
    FILENAME == me "/list" { if (NF < 6) next
      d = $6; sub(/\/[^\/]*$/, "", d); if (d != dir || ($6 in held)) next
      n = substr($6, length(d) + 2); mine[n] = 1
      if ($1 == "w") print n "\t" dir "/.panel-new-" run "/" n; next }
    { n = substr($0, length(dir) + 2); if (!(n in mine)) print n "\t" $0 }' \
    "$me/held.$name" "$me/list" "$me/live.$name" | sort -t "$(printf '\t')" -k1,1 \
    | cut -f2 > "$me/files.$name"
  rm -f -- "$me/live.$name" "$me/held.$name"
  if awk -v want="$dir/$pattern" -v files="$me/files.$name" '
      !done && $0 !~ /^[ \t]*[#;]/ && index(tolower($0), "include") && index($0, want) {
        i = index($0, want); pre = substr($0, 1, i - 1); post = substr($0, i + length(want))
        while ((getline f < files) > 0) print pre f post
        done = 1; next }
      { print } END { exit !done }' "$main" > "$conf"; then
    "$@" 2>&1
    echo "@@panel-exit $?"
  else
    echo "$main does not include $dir/$pattern"
    echo "@@panel-exit 2"
  fi
  rm -f -- "$conf" "$me/files.$name"
}

# Run the validation jobs of a stage: $me/jobs/NNN-NAME.tree (one value per line: main conf,
# include dir, pattern, staged conf, then the argv) and $me/jobs/NNN-NAME.cmd (argv,
# NUL-separated). Prints each job's output, then "@@panel-job NAME CODE".
run_jobs() {
  jobs_failed=0
  [ -d "$me/jobs" ] || return 0
  for f in "$me"/jobs/*; do
    [ -f "$f" ] || continue
    base=${f##*/} && job=${base#*-} && job=${job%.*}
    case "$f" in
    *.tree)
      set --
      while IFS= read -r a; do set -- "$@" "$a"; done < "$f"
      t1=$1 t2=$2 t3=$3 t4=$4
      shift 4
      out=$(run_tree "$job" "$t1" "$t2" "$t3" "$t4" -- "$@")
      code=$(printf '%s\n' "$out" | sed -n 's/^@@panel-exit //p' | tail -n 1)
      printf '%s\n' "$out" | grep -v '^@@panel-exit '
      ;;
    *.in)
      continue
      ;;
    *)
      input=/dev/null
      [ -f "${f%.cmd}.in" ] && input="${f%.cmd}.in"
      xargs -0 -x -a "$f" sh -c 'exec "$@"' job < "$input" 2>&1
      code=$?
      ;;
    esac
    echo "@@panel-job $job ${code:-3}"
    [ "${code:-3}" -eq 0 ] || jobs_failed=1
  done
}

# Swap this run's files in: the pending reload first, then per directory hard-linked backups
# and renames. Held-back paths in $me/held. Args: the services to reload.
do_swap() {
  target="$state/pending.$run" put "$run" "$@" \
    && sync -- "$state/pending.$run" && mv -f -- "$state/pending.$run" "$state/pending" \
    || { rm -f -- "$state/pending.$run"; die "cannot record the pending reload in $state"; }
  rm -f -- "$me/swapdirs" "$me/swapped" "$me"/d[0-9]*
  split_by_dir
  : > "$me/swapped"
  [ -f "$me/swapdirs" ] || return 0
  k=0
  while IFS= read -r d; do
    k=$((k + 1)); f="$me/d$k"; old="$d/.panel-old-$run"; new="$d/.panel-new-$run"
    mkdir -p -m 700 -- "$old" || die "cannot create $old"
    # Back up every file about to be replaced or removed (a hard link: no space needed).
    cat "$f.w" "$f.r" 2>/dev/null | (cd "$d" && xargs -r -d '\n' sh -c '
      for n; do
        if [ -e "$n" ] && [ ! -e "$0/$n" ]; then ln -- "$n" "$0/$n" || exit 1; fi
      done' "$old") || die "backing up files in $d failed"
    # Only now may rollback touch these paths: each has its backup, or was new.
    cat "$f.w" "$f.r" 2>/dev/null | awk -v d="$d" '{ print d "/" $0 }' >> "$me/swapped"
    if [ -f "$f.w" ]; then
      (cd "$new" && xargs -r -d '\n' mv -f -t "$d" -- < "$f.w") || die "moving files into $d failed"
    fi
    if [ -f "$f.r" ]; then
      (cd "$d" && xargs -r -d '\n' rm -f -- < "$f.r") || die "removing files from $d failed"
    fi
    sync -- "$d" 2>/dev/null || true
  done < "$me/swapdirs"
}

# Write the manifest shards in DIR/manifest/*.tsv, drop the shards named in DIR/drop, clear
# the pending reload, remove this run's staging and backups, release the lock.
do_commit() {
  src=$1
  mkdir -p -m 700 -- "$state/manifest" || die "cannot create $state/manifest"
  if [ -d "$src/manifest" ]; then
    for f in "$src"/manifest/*.tsv; do [ -e "$f" ] && { sync -- "$f" || die "cannot sync $f"; }; done
    (cd "$src/manifest" && find . -name '*.tsv' | xargs -r mv -f -t "$state/manifest" --) \
      || die "cannot write the manifest"
  fi
  if [ -f "$src/drop" ]; then
    while IFS= read -r x; do rm -f -- "$state/manifest/$x.tsv"; done < "$src/drop"
  fi
  target="$state/last-run" put "$run committed" || die "cannot record the run's outcome"
  first=""
  read -r first < "$state/pending" 2>/dev/null || true
  [ "$first" = "$run" ] && rm -f -- "$state/pending"
  [ -f "$me/dirs" ] && while IFS= read -r d; do
    rm -rf -- "$d/.panel-new-$run" "$d/.panel-old-$run"
  done < "$me/dirs"
  rm -rf -- "$me"
  rm -f -- "$state/lock"
}

# Swap, run the steps of $me/go in order, and commit if every step succeeded: one round trip
# for the whole change. Finishes on the server even if the connection drops; the output is
# kept in $me/go.log (ending "@@panel-end CODE") for a new connection to read, and a commit
# leaves "RUN committed" in STATE/last-run. Args: the services to reload.
run_go() {
  trap '' HUP PIPE
  log="$me/go.log"
  # The log outlives the commit (which removes $me) through descriptors opened first.
  if : > "$log" 2>/dev/null && exec 3< "$log" 4>> "$log"; then
    (batch "$@") >&4 2>&1
    code=$?
    echo "@@panel-end $code" >&4
    cat <&3
    exit "$code"
  fi
  batch "$@" 2>&1
  exit $?
}

batch() {
  cp -- "$me/go/held" "$me/held" 2>/dev/null || : > "$me/held"
  do_swap "$@"
  echo "@@panel-swapped"
  for f in "$me"/go/steps/*; do
    [ -f "$f" ] || continue
    case "$f" in *.in) continue;; esac
    input=/dev/null
    [ -f "$f.in" ] && input="$f.in"
    xargs -0 -x -a "$f" sh -c 'exec "$@"' step < "$input" 2>&1
    code=$?
    echo "@@panel-step ${f##*/} $code"
    if [ "$code" -ne 0 ]; then echo "@@panel-stopped"; return 0; fi
  done
  if [ -f "$me/go/commit" ]; then
    do_commit "$me/go"
    echo "@@panel-committed"
  fi
}

case "$cmd" in
stage)  # stdin: a tar with the run's list and the staged files (below DIR/.panel-new-RUN/)
  take_lock "${1:-}"
  # Leftovers of runs that died (we hold the lock, so none of them is running).
  for d in "$state"/runs/*; do
    [ "$d" != "$me" ] && [ "$d" != "$me.log" ] || continue
    [ -f "$d" ] && { rm -f -- "$d"; continue; }
    [ -d "$d" ] || continue
    [ -f "$d/dirs" ] && while IFS= read -r x; do
      rm -rf -- "$x/.panel-new-${d##*/}" "$x/.panel-old-${d##*/}" "$x/.panel-test-${d##*/}"-*
    done < "$d/dirs"
    rm -rf -- "$d"
  done
  rm -rf -- "$me" && mkdir -p -m 700 -- "$me" || die "cannot create $me"
  cat > "$me/bundle.tar" || die "cannot store the bundle in $me"
  tar -xOf "$me/bundle.tar" "${me#/}/list" > "$me/list" || die "the bundle has no list"
  awk -F'\t' 'NF >= 6 { d = $6; sub(/\/[^\/]*$/, "", d); if (!(d in s)) { s[d] = 1; print d } }' \
    "$me/list" > "$me/dirs"
  check_dirs
  while IFS= read -r d; do
    mkdir -p -m 755 -- "$d" || die "cannot create $d"
  done < "$me/dirs"
  tar -xpf "$me/bundle.tar" -C / --no-overwrite-dir || die "unpacking the bundle failed"
  rm -f -- "$me/bundle.tar"
  # Every staged file must be exactly what was sent: content, mode and owner.
  awk -F'\t' '$1 == "w" { d = $6; sub(/\/[^\/]*$/, "", d); n = substr($6, length(d) + 2)
       print $2 "  " d "/.panel-new-" run "/" n }' run="$run" "$me/list" > "$me/sums"
  if [ -s "$me/sums" ]; then
    sha256sum --quiet --strict -c "$me/sums" >&2 || die "staged files do not match what was sent"
    cut -c67- "$me/sums" | xargs -r -d '\n' stat -c '%a %U %G %n' -- > "$me/stat" \
      || die "cannot stat the staged files"
    awk -F'\t' -v run="$run" -v me="$me" '
      FILENAME != me "/stat" { if ($1 == "w") { d = $6; sub(/\/[^\/]*$/, "", d)
          want[d "/.panel-new-" run "/" substr($6, length(d) + 2)] = $3 " " $4 " " $5 }; next }
      { split($0, a, " "); p = substr($0, length(a[1] a[2] a[3]) + 4)
        if (want[p] != a[1] " " a[2] " " a[3]) {
          print p ": is " a[1] " " a[2] ":" a[3] ", wanted " want[p] " (does that user exist?)"; bad = 1 } }
      END { exit bad }' "$me/list" "$me/stat" >&2 || exit 3
    cut -c67- "$me/sums" | xargs -r -d '\n' sync -- || die "fsync of the staged files failed"
  fi
  echo "staged $(grep -c '^w' "$me/list") files, $(grep -c '^r' "$me/list") removals"
  run_jobs
  # A batch sent along runs at once when every validation passed (one round trip in all).
  if [ -d "$me/go" ] && [ "$jobs_failed" -eq 0 ]; then
    set --
    while IFS= read -r x; do set -- "$@" "$x"; done < "$me/go/services"
    echo "@@panel-go"
    run_go "$@"
  fi
  ;;

tree)  # NAME MAIN_CONF INCLUDE_DIR PATTERN STAGED_CONF -- ARGV...; stdin: held-back paths
  own_lock
  cat > "$me/held.$1"
  run_tree "$@"
  ;;

swap)  # SERVICES...; stdin: held-back paths. Finishes even if the connection drops.
  trap '' HUP PIPE
  own_lock
  cat > "$me/held"
  do_swap "$@"
  echo "swapped $(wc -l < "$me/swapped")"
  ;;

go)  # SERVICES...; stdin: a tar of held, steps/NN (NUL-separated argv), manifest/, drop.
  trap '' HUP PIPE
  own_lock
  rm -rf -- "$me/go" && mkdir -p -m 700 -- "$me/go" || die "cannot create $me/go"
  tar -xf - -C "$me/go" || die "cannot unpack the batch"
  run_go "$@"
  ;;

batch-log)  # the log of this run's batch, if it did not commit (after a dropped connection)
  cat -- "$me/go.log" 2>/dev/null
  ;;

rollback)  # stdin: paths to put back (every swapped one when empty)
  # Needs no free space and writes nothing to the state dir before restoring: a full or
  # read-only state dir must not stop it. A path without a backup was new; it is removed
  # only while it still holds exactly the file this run wrote.
  trap '' HUP PIPE
  own_lock
  [ -f "$me/swapped" ] || { echo "restored"; exit 0; }
  tab=$(printf '\t')
  errors=$(awk -F'\t' -v sw="$me/swapped" -v list="$me/list" '
      FILENAME == "/dev/stdin" { want[$0] = 1; any = 1; next }
      FILENAME == list { if ($1 == "w") sha[$6] = $2; next }
      FILENAME == sw && (!any || ($0 in want)) { print (($0 in sha) ? sha[$0] : "-") "\t" $0 }' \
      /dev/stdin "$me/list" "$me/swapped" | while IFS="$tab" read -r sha p; do
    d=${p%/*} b=${p##*/}
    if [ "$d/.panel-old-$run/$b" -ef "$p" ]; then
      rm -f -- "$d/.panel-old-$run/$b"  # put back already (by the firewall's own revert)
    elif [ -e "$d/.panel-old-$run/$b" ]; then
      mv -f -- "$d/.panel-old-$run/$b" "$p" 2>&1 || echo "cannot restore $p"
    elif [ -e "$p" ] && [ "$sha" != "-" ]; then
      got=$(sha256sum -- "$p" 2>/dev/null | cut -c1-64)
      if [ "$got" = "$sha" ]; then rm -f -- "$p" 2>&1 || echo "cannot remove $p"; fi
    fi
  done)
  sync 2>/dev/null || true
  if [ -n "$errors" ]; then echo "$errors" >&2; exit 4; fi
  echo restored
  ;;

commit)  # DROP...; stdin: a tar of manifest shards (manifest/XX.tsv)
  trap '' HUP PIPE
  own_lock
  rm -rf -- "$me/c" && mkdir -p -m 700 -- "$me/c/manifest" || die "cannot create $me/c"
  tar -xf - -C "$me/c" || die "cannot unpack the manifest"
  for x in "$@"; do echo "$x"; done > "$me/c/drop"
  do_commit "$me/c"
  echo committed
  ;;

abort)  # drop this run's staging (nothing was swapped) and release the lock
  own_lock
  [ -f "$me/dirs" ] && while IFS= read -r d; do
    rm -rf -- "$d/.panel-new-$run" "$d/.panel-old-$run" "$d/.panel-test-$run"-*
  done < "$me/dirs"
  rm -rf -- "$me"
  rm -f -- "$state/lock"
  echo aborted
  ;;

status)  # what a dead run left: the pending reload, the lock
  echo "pending:"
  cat -- "$state/pending" 2>/dev/null
  echo "lock:"
  cat -- "$state/lock" 2>/dev/null
  echo "last:"
  cat -- "$state/last-run" 2>/dev/null
  echo "running:"
  [ -d "$state/runs/${run}" ] && echo "$run"
  echo "shards:"
  for f in "$state"/manifest/*.tsv; do [ -e "$f" ] && basename -- "$f" .tsv; done
  ;;

hash)  # stdin: paths; prints "sha256 mode owner group path" for those that exist
  sums=$(mktemp) || die "cannot create a temporary file"
  trap 'rm -f -- "$sums"' EXIT
  xargs -r -d '\n' sha256sum -- 2>/dev/null > "$sums" || true
  cut -c67- "$sums" | xargs -r -d '\n' stat -c '%a %U %G %n' -- 2>/dev/null \
    | awk 'NR == FNR { s[substr($0, 67)] = substr($0, 1, 64); next }
           { split($0, a, " "); p = substr($0, length(a[1] a[2] a[3]) + 4)
             print s[p] " " a[1] " " a[2] " " a[3] " " p }' "$sums" -
  ;;

manifest)  # the whole manifest, one line per file
  cat "$state"/manifest/*.tsv 2>/dev/null || true
  ;;

*)
  die "unknown command $cmd"
  ;;
esac

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
# group path; op w = write, r = remove). Held-back paths (failed units) come on stdin.
split_by_dir() {
  cat > "$me/held"
  awk -F'\t' -v me="$me" '
    FILENAME == me "/held" { held[$0] = 1; next }
    ($6 in held) { next }
    { p = $6; d = p; sub(/\/[^\/]*$/, "", d); n = substr(p, length(d) + 2)
      if (!(d in idx)) { idx[d] = ++k; print d > (me "/swapdirs") }
      f = me "/d" idx[d]; print n > (f "." $1) }' \
    "$me/held" "$me/list"
}

case "$cmd" in
stage)  # stdin: a tar with the run's list and the staged files (below DIR/.panel-new-RUN/)
  take_lock "${1:-}"
  # Leftovers of runs that died (we hold the lock, so none of them is running).
  for d in "$state"/runs/*; do
    [ -d "$d" ] && [ "$d" != "$me" ] || continue
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
  ;;

tree)  # NAME MAIN_CONF INCLUDE_DIR PATTERN STAGED_CONF -- ARGV...; stdin: held-back paths
  own_lock
  name=$1 main=$2 dir=$3 pattern=$4 conf=$5
  shift 6
  tree="$dir/.panel-test-$run-$name"
  trap 'rm -rf -- "$tree"; rm -f -- "$conf"' EXIT
  rm -rf -- "$tree" && mkdir -m 700 -- "$tree" || die "cannot create $tree"
  cat > "$me/held.$name"
  find "$dir" -maxdepth 1 -name "$pattern" ! -name '.*' -print0 | xargs -0 -r ln -s -t "$tree" --
  awk -F'\t' -v dir="$dir" -v me="$me" -v run="$run" -v name="$name" '
    FILENAME == me "/held." name { held[$0] = 1; next }
    { d = $6; sub(/\/[^\/]*$/, "", d); if (d != dir || ($6 in held)) next
      n = substr($6, length(d) + 2); print n > (me "/drop." name)
      if ($1 == "w") print dir "/.panel-new-" run "/" n > (me "/link." name) }' \
    "$me/held.$name" "$me/list"
  if [ -f "$me/drop.$name" ]; then
    (cd "$tree" && xargs -r -d '\n' rm -f -- < "$me/drop.$name")
  fi
  if [ -f "$me/link.$name" ]; then
    xargs -r -d '\n' ln -s -t "$tree" -- < "$me/link.$name"
  fi
  rm -f -- "$me/drop.$name" "$me/link.$name" "$me/held.$name"
  awk -v want="$dir/$pattern" -v dir="$dir/" -v tree="$tree/" '
    !done && $0 !~ /^[ \t]*[#;]/ && index($0, "include") && index($0, want) {
      i = index($0, dir); $0 = substr($0, 1, i - 1) tree substr($0, i + length(dir)); done = 1 }
    { print } END { exit !done }' "$main" > "$conf" \
    || { echo "$main does not include $dir/$pattern"; echo "@@panel-exit 2"; exit 0; }
  "$@" 2>&1
  echo "@@panel-exit $?"
  ;;

swap)  # SERVICES...; stdin: held-back paths. Finishes even if the connection drops.
  trap '' HUP PIPE
  own_lock
  target="$state/pending.$run" put "$run" "$@" \
    && sync -- "$state/pending.$run" && mv -f -- "$state/pending.$run" "$state/pending" \
    || { rm -f -- "$state/pending.$run"; die "cannot record the pending reload in $state"; }
  rm -f -- "$me/swapdirs" "$me/swapped" "$me"/d[0-9]*
  split_by_dir
  [ -f "$me/swapdirs" ] || { echo "swapped 0"; exit 0; }
  : > "$me/swapped"
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
  echo "swapped $(wc -l < "$me/swapped")"
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

commit)  # stdin: a tar of manifest shards (manifest/XX.tsv); clears the pending reload
  trap '' HUP PIPE
  own_lock
  mkdir -p -m 700 -- "$state/manifest" "$me/manifest" || die "cannot create $state/manifest"
  tar -xf - -C "$me" || die "cannot unpack the manifest"
  for f in "$me"/manifest/*.tsv; do [ -e "$f" ] && sync -- "$f"; done
  (cd "$me/manifest" && find . -name '*.tsv' | xargs -r mv -f -t "$state/manifest" --) \
    || die "cannot write the manifest"
  for x in "$@"; do rm -f -- "$state/manifest/$x.tsv"; done
  first=""
  read -r first < "$state/pending" 2>/dev/null || true
  [ "$first" = "$run" ] && rm -f -- "$state/pending"
  [ -f "$me/dirs" ] && while IFS= read -r d; do
    rm -rf -- "$d/.panel-new-$run" "$d/.panel-old-$run"
  done < "$me/dirs"
  rm -rf -- "$me"
  rm -f -- "$state/lock"
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

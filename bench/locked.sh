#!/bin/bash
# Locked against unlocked: examples/debian-minimal.json built cold (no
# objects in the store) both ways, RUNS rounds (default 1), each building
# both in turn (this machine's speed drifts from minute to minute); medians
# reported. Run as root. Prints:
#   pins      how many packages the lock pins
#   lock      `osbuild lock` of the manifest (resolving against the mirror)
#   fetch     `osbuild fetch --sources DIR` into an empty DIR, and how much
#   unlocked  a cold build, the package cache warm (STORE/cache kept from an
#             untimed warm-up build, objects and refs removed before each)
#   locked    a cold build with --locked --sources DIR (the fetched files:
#             the same advantage), a fresh store each time
# and the ratio locked/unlocked (target <= 1.0).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-1}
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
command -v jq > /dev/null || { echo "needs jq" >&2; exit 1; }
export LC_ALL=C

cargo build --release --locked -q
bin=$PWD/target/release/osbuild
work=$(mktemp -d /var/tmp/osbuild-bench-locked.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/locked" "$work/unlocked"
cp examples/debian-minimal.json "$work/locked/"
cp examples/debian-minimal.json "$work/unlocked/"

now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

t0=$(now)
"$bin" lock "$work/locked/debian-minimal.json" 2> /dev/null
t1=$(now)
"$bin" --sources "$work/sources" fetch "$work/locked/debian-minimal.json" 2> /dev/null
t2=$(now)
pins=$(jq '[.stages[].locked.repositories[].packages[]] | length' "$work/locked/debian-minimal.lock")
fetched=$(du -sm "$work/sources" | cut -f1)
printf 'pins      %d packages\n' "$pins"
printf 'lock      %.1f s\n' "$(secs "$t0" "$t1")"
printf 'fetch     %.1f s (%d MiB)\n' "$(secs "$t1" "$t2")" "$fetched"

# The unlocked warm-up: fills STORE/cache.
"$bin" --store "$work/store-unlocked" build "$work/unlocked/debian-minimal.json" > /dev/null 2>&1

: > "$work/unlocked.times"
: > "$work/locked.times"
for round in $(seq "$runs"); do
    rm -rf "$work/store-unlocked/objects" "$work/store-unlocked/refs"
    t0=$(now)
    "$bin" --store "$work/store-unlocked" build "$work/unlocked/debian-minimal.json" > /dev/null 2>&1
    t1=$(now)
    rm -rf "$work/store-locked"
    "$bin" --store "$work/store-locked" --sources "$work/sources" build --locked \
        "$work/locked/debian-minimal.json" > /dev/null 2>&1
    t2=$(now)
    secs "$t0" "$t1" >> "$work/unlocked.times"
    secs "$t1" "$t2" >> "$work/locked.times"
    printf 'round %d: unlocked %.1f s, locked %.1f s\n' "$round" "$(secs "$t0" "$t1")" "$(secs "$t1" "$t2")"
done
unlocked=$(median < "$work/unlocked.times")
locked=$(median < "$work/locked.times")
printf 'unlocked  %.1f s (median of %d)\n' "$unlocked" "$runs"
printf 'locked    %.1f s (median of %d)\n' "$locked" "$runs"
printf 'locked/unlocked %.2f (target <= 1.0)\n' "$(echo "$locked / $unlocked" | bc -l)"

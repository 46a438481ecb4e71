#!/bin/bash
# Engine overhead benchmark: a 10-stage pipeline of trivial stages.
# Prints the cold build time, the per-stage overhead and a fully cached re-run
# (medians of several runs). Goals: per-stage overhead < 20 ms (osbuild: 750 to
# 1000 ms), cached re-run < 50 ms (osbuild: 600 to 900 ms). Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-7}
cargo build --release --locked -q
bin=$PWD/target/release/osbuild
work=$(mktemp -d /var/tmp/osbuild-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

stages() { # $1 = count
    local out="" i
    for ((i = 0; i < $1; i++)); do
        out+="${out:+,}{\"name\": \"org.osbuild.mkdir\", \"options\": {\"paths\": [{\"path\": \"/d$i\"}]}}"
    done
    echo "{\"stages\": [$out]}"
}
stages 10 > "$work/ten.json"
stages 0 > "$work/zero.json"

. bench/timing.sh

# Contenders, run in turn round by round (this machine's speed drifts): the
# sandbox as it is (seccomp filter, cgroup limits), the same without the
# cgroup (`--limit memory=max --limit pids=max`), and optionally another
# build of osbuild to compare with (BASELINE=/path/to/osbuild).
labels=("osbuild" "osbuild, no cgroup")
cmds=("$bin" "$bin --limit memory=max --limit pids=max")
if [[ -n "${BASELINE:-}" ]]; then
    labels+=("baseline ($BASELINE)")
    cmds+=("$BASELINE")
fi
declare -A cold empty cached
for ((r = 0; r < runs; r++)); do
    for i in "${!cmds[@]}"; do
        read -ra cmd <<< "${cmds[$i]}"
        rm -rf "$work/store"
        empty[$i]+=" $(ms "${cmd[@]}" --store "$work/store" build "$work/zero.json")"
        rm -rf "$work/store"
        cold[$i]+=" $(ms "${cmd[@]}" --store "$work/store" build "$work/ten.json")"
        cached[$i]+=" $(ms "${cmd[@]}" --store "$work/store" build "$work/ten.json")"
    done
done

echo "engine benchmark: 10 trivial stages, median of $runs runs ($(nproc) cores)"
for i in "${!cmds[@]}"; do
    cold_ms=$(tr ' ' '\n' <<< "${cold[$i]}" | grep . | median)
    empty_ms=$(tr ' ' '\n' <<< "${empty[$i]}" | grep . | median)
    cached_ms=$(tr ' ' '\n' <<< "${cached[$i]}" | grep . | median)
    per_stage=$(awk -v c="$cold_ms" -v e="$empty_ms" 'BEGIN {printf "%.1f", (c - e) / 10}')
    echo "${labels[$i]}:"
    printf '  %-36s %6s ms\n' "cold build (empty store)" "$cold_ms"
    printf '  %-36s %6s ms\n' "process start + empty pipeline" "$empty_ms"
    printf '  %-36s %6s ms   (goal < 20; osbuild ~750-1000)\n' "per-stage overhead" "$per_stage"
    printf '  %-36s %6s ms   (goal < 50; osbuild ~600-900)\n' "fully cached re-run" "$cached_ms"
done

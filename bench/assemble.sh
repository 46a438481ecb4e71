#!/bin/bash
# The qemu assembler on a tree of your own (a Debian tree from the store,
# say): `bench/assemble.sh TREE`. RUNS (default 3) rounds, each assembling
# raw, qcow2 with zlib and qcow2 with zstd in turn (this machine's speed
# drifts from minute to minute); prints the median seconds and the size of
# each. Run as root (the tree's files are root's).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/timing.sh
tree=${1:?usage: bench/assemble.sh TREE}
runs=${RUNS:-3}
cargo build --release --locked -q -p osbuild-assemblers --example assemble
bin=target/release/examples/assemble
results=$(mktemp)
trap 'rm -f "$results"' EXIT
for _ in $(seq "$runs"); do
    "$bin" "$tree" raw qcow2:zlib qcow2:zstd >> "$results"
done
printf '%-12s %8s %14s\n' image seconds bytes
for spec in raw qcow2:zlib qcow2:zstd; do
    seconds=$(awk -v s="$spec" '$1 == s { print $2 }' "$results" | median)
    size=$(awk -v s="$spec" '$1 == s { print $3 }' "$results" | tail -1)
    printf '%-12s %8s %14s\n' "$spec" "$seconds" "$size"
done

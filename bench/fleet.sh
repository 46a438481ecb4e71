#!/bin/bash
# Fleet benchmark: what a fleet costs against its images. Run as root; RUNS
# rounds (default 1), each measuring every contender in turn, medians
# reported; every build has a fresh store but a warm package cache (STORE/cache
# copied from an untimed warm-up store). JOBS (default: the cores) is -j.
#   small-one    one image of a 6-image fleet that differs only in
#                configuration and one small package per image, built alone
#   small-fleet  the whole 6-image fleet (osbuild run -j JOBS)
#   fleet        examples/fleet.rhai (osbuild run -j JOBS)
#   fleet-work   the work examples/fleet.rhai's images do: the sum of the
#                durations of its distinct stages, as a -j 1 run reports them
#                (shared stages once)
# Ratios: small-fleet/small-one (target <= 1.3) and fleet/fleet-work
# (target <= 1.3).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-1}
jobs=${JOBS:-$(nproc)}
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
command -v jq > /dev/null || { echo "needs jq" >&2; exit 1; }
export LC_ALL=C

cargo build --release --locked -q
bin=$PWD/target/release/osbuild
work=$(mktemp -d /var/tmp/osbuild-bench-fleet.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp -r examples/keys "$work/"
cp examples/fleet.rhai "$work/fleet.rhai"
cat > "$work/small.rhai" << 'EOF'
// Six images on one Debian base: each its host name, one file and one small package.
import "debian" as debian;
let only = param("only", "");
let base = debian::system("small-base", #{});
for pair in [["a", "less"], ["b", "tree"], ["c", "jq"], ["d", "file"], ["e", "bc"], ["f", "lsof"]] {
    let name = "small-" + pair[0];
    if only != "" && only != name { continue; }
    let p = base.named(name);
    p.file("/etc/role", name + "\n");
    emit(debian::finish(p, #{ packages: [pair[1]], hostname: name }));
}
EOF

now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

# Untimed: fills the package cache for every contender.
"$bin" --store "$work/warm" run -o "$work/out-warm-small" "$work/small.rhai" > /dev/null 2>&1
"$bin" --store "$work/warm" run -o "$work/out-warm-fleet" "$work/fleet.rhai" > /dev/null 2>&1

fresh() {
    rm -rf "$work/store" "$work/out"
    mkdir -p "$work/store"
    chmod 700 "$work/store"
    cp -a "$work/warm/cache" "$work/store/"
}

for name in small-one small-fleet fleet fleet-work; do : > "$work/$name.times"; done
for round in $(seq "$runs"); do
    fresh
    t0=$(now)
    "$bin" --store "$work/store" run -o "$work/out" -D only=small-a "$work/small.rhai" > /dev/null 2>&1
    secs "$t0" "$(now)" >> "$work/small-one.times"

    fresh
    t0=$(now)
    "$bin" --store "$work/store" run -j "$jobs" -o "$work/out" "$work/small.rhai" > /dev/null 2>&1
    secs "$t0" "$(now)" >> "$work/small-fleet.times"

    fresh
    t0=$(now)
    "$bin" --store "$work/store" run -j "$jobs" -o "$work/out" "$work/fleet.rhai" > /dev/null 2>&1
    secs "$t0" "$(now)" >> "$work/fleet.times"

    # The work: every distinct stage's duration, from a -j 1 run's events.
    fresh
    t0=$(now)
    "$bin" --store "$work/store" --json run -j 1 -o "$work/out" "$work/fleet.rhai" > "$work/events" 2> /dev/null
    t1=$(now)
    stages=$(jq -s '[.[] | select(.type == "stage-end" and .status == "success") | .duration_ms] | add / 1000' "$work/events")
    echo "$stages" >> "$work/fleet-work.times"
    printf 'round %d: small-one %.1f s, small-fleet %.1f s, fleet %.1f s, fleet -j1 %.1f s (stages %.1f s)\n' \
        "$round" "$(tail -1 "$work/small-one.times")" "$(tail -1 "$work/small-fleet.times")" \
        "$(tail -1 "$work/fleet.times")" "$(secs "$t0" "$t1")" "$stages"
done
one=$(median < "$work/small-one.times")
small=$(median < "$work/small-fleet.times")
fleet=$(median < "$work/fleet.times")
fwork=$(median < "$work/fleet-work.times")
printf 'small-one    %.1f s\n' "$one"
printf 'small-fleet  %.1f s (-j %d)\n' "$small" "$jobs"
printf 'fleet        %.1f s (-j %d)\n' "$fleet" "$jobs"
printf 'fleet-work   %.1f s (its distinct stages, one after another)\n' "$fwork"
printf 'small-fleet/small-one %.2f (target <= 1.3)\n' "$(echo "$small / $one" | bc -l)"
printf 'fleet/fleet-work      %.2f (target <= 1.3)\n' "$(echo "$fleet / $fwork" | bc -l)"

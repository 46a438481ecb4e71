#!/bin/bash
# Front-end benchmark: lowers a 1000-image fleet (10 roles x 10 sites x 10
# sizes of one Debian base, about 12 stages each, every option checked) and
# prints the wall time, process included, next to the time `inspect` takes on
# the result (the same script: lowering plus ids and store look-ups for all
# 1000 images) and on one of the lowered JSON manifests. Medians of several
# runs, release build. Goal: lowering under 100 ms.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-7}
cargo build --release --locked -q
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/osbuild
work=$(mktemp -d /var/tmp/osbuild-bench-lower.XXXXXX)
trap 'rm -rf "$work"' EXIT

cat > "$work/fleet1000.rhai" <<'SCRIPT'
import "debian" as debian;
import "fleet" as fleet;

let base = debian::system("base", #{ timezone: "Europe/Berlin" });
let roles = ["web", "db", "cache", "queue", "mail", "dns", "proxy", "build", "log", "monitor"];
let sites = ["ber", "fra", "ams", "par", "lon", "mad", "mil", "vie", "waw", "sto"];
let sizes = ["2G", "4G", "8G", "16G", "32G", "64G", "128G", "256G", "512G", "1T"];

fleet::each(#{ role: roles, site: sites, size: sizes }, |c| {
    let name = fleet::name(c);
    debian::finish(base.named(name), #{
        packages: ["pkg-" + c.role],
        services: [c.role + ".service"],
        hostname: name + ".example.org",
        size: c.size,
    })
});
SCRIPT

. bench/timing.sh

"$bin" lower "$work/fleet1000.rhai" -o "$work/manifests" > /dev/null
manifests=("$work"/manifests/*.json)
count=${#manifests[@]}
one=${manifests[0]}
bytes=$("$bin" lower "$work/fleet1000.rhai" | wc -c)

lower=() lower_o=() inspect=() inspect_one=()
for ((r = 0; r < runs; r++)); do
    lower+=("$(ms "$bin" lower "$work/fleet1000.rhai")")
    rm -rf "$work/out"
    lower_o+=("$(ms "$bin" lower "$work/fleet1000.rhai" -o "$work/out")")
    inspect+=("$(ms "$bin" --store "$work/store" inspect "$work/fleet1000.rhai")")
    inspect_one+=("$(ms "$bin" --store "$work/store" inspect "$one")")
done
m() { printf '%s\n' "$@" | median; }

echo "front-end benchmark: a $count-image fleet ($bytes bytes of JSON), median of $runs runs ($(nproc) cores)"
printf '  %-44s %6s ms   (goal < 100)\n' "lower, manifests to stdout" "$(m "${lower[@]}")"
printf '  %-44s %6s ms\n' "lower -o DIR (one file per image)" "$(m "${lower_o[@]}")"
printf '  %-44s %6s ms\n' "inspect the script (lower + plan $count)" "$(m "${inspect[@]}")"
printf '  %-44s %6s ms\n' "inspect one lowered JSON manifest" "$(m "${inspect_one[@]}")"

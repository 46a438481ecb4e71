#!/bin/bash
# Debian image benchmark: examples/debian-minimal.json (bookworm minbase + a
# kernel, 2 GiB zstd qcow2 with GRUB) built by osbuild, against the same work
# done by hand (the floor) and against mkosi. Run as root; RUNS (default 1)
# rounds, each running all of them in turn (this machine's speed drifts from
# minute to minute), medians reported. Prints:
#   cold      osbuild, no objects in the store, warm package cache
#   warm      osbuild, only the last stage (machine-id) changed
#   floor     mmdebstrap + sfdisk + mkfs.ext4 -d + grub-mkimage + qemu-img
#   mkosi     mkosi 14, Format=directory, warm package cache
# and the ratios cold/floor (target <= 1.1) and cold/mkosi (target <= 0.8).
#
# Package cache, the same advantage for everyone:
#   osbuild   STORE/cache kept from an untimed warm-up build, objects and
#             refs removed before each cold build.
#   floor     the same cached .debs (renamed from STORE/cache/deb/debs/SHA.deb
#             to apt's NAME_VERSION_ARCH.deb, untimed) copied into the tree's
#             var/cache/apt/archives by a --setup-hook, as the debootstrap
#             stage does (with --skip=download/empty,essential/unlink), and the
#             cached package lists copied into var/lib/apt/lists so apt-get
#             update only revalidates them, as the stages do.
#   mkosi     its own --cache directory, filled by an untimed first run.
# The mirror is the host's (its apt sources, read at run time); only the
# manifest's suite and component main are used, as the stages do.
#
# mkosi 14 notes: it sets INITRD=No, so the kernel's initramfs is not built;
# its postinst scripts need systemd-nspawn, which needs systemd as PID 1. So
# the initramfs is built afterwards with `chroot TREE update-initramfs -c`,
# timed and added. It also installs a few packages more than asked (dbus,
# libpam-systemd, systemd-resolved, ca-certificates), uses debootstrap for the
# base and cannot make a bootable disk image on this kernel: a directory only.
# Installing mkosi needs systemd-container, which must match the host's
# systemd version (otherwise apt would upgrade the host's systemd): pinned to
# it, and mkosi is skipped if that version is not available.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-1}
manifest=$PWD/examples/debian-minimal.json
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
export LC_ALL=C

# --- host tools ---------------------------------------------------------------
missing=()
for pair in mmdebstrap:mmdebstrap qemu-img:qemu-utils grub-mkimage:grub-common \
    sfdisk:fdisk mkfs.ext4:e2fsprogs debugfs:e2fsprogs jq:jq zstd:zstd; do
    command -v "${pair%%:*}" > /dev/null || missing+=("${pair#*:}")
done
[ -f /usr/lib/grub/i386-pc/boot.img ] || missing+=(grub-pc-bin)
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || missing+=(debian-archive-keyring)
mkosi_skip=""
if ! command -v mkosi > /dev/null; then
    if sysver=$(dpkg-query -W -f='${Version}' systemd 2> /dev/null) && [ -n "$sysver" ]; then
        [ ${#missing[@]} -gt 0 ] || apt-get update -qq
        if apt-cache madison systemd-container | awk -F'|' '{gsub(/ /, "", $2); print $2}' | grep -qxF "$sysver"; then
            missing+=(mkosi "systemd-container=$sysver")
        else
            mkosi_skip="mkosi not installed: it needs systemd-container $sysver (the host's systemd), which apt does not offer; any other version would upgrade the host's systemd"
        fi
    else
        missing+=(mkosi)
    fi
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing host packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
fi

cargo build --release --locked -q
bin=$PWD/target/release/osbuild

# --- what the manifest builds ---------------------------------------------------
suite=$(jq -r '.stages[] | select(.name == "org.osbuild.debootstrap") | .options.suite' "$manifest")
variant=$(jq -r '.stages[] | select(.name == "org.osbuild.debootstrap") | .options.variant // "minbase"' "$manifest")
packages=$(jq -r '[.stages[] | select(.name == "org.osbuild.apt") | .options.packages[]] | join(",")' "$manifest")
hostname=$(jq -r '.stages[] | select(.name == "org.osbuild.hostname") | .options.hostname' "$manifest")
uuid=$(jq -r '.assembler.options.root_fs_uuid' "$manifest")
ptuuid=$(jq -r '.assembler.options.ptuuid' "$manifest")
size=$(jq -r '.assembler.options.size' "$manifest")
kernel_opts=$(jq -r '.stages[] | select(.name == "org.osbuild.grub2") | .options.kernel_opts // ""' "$manifest")
arch=$(dpkg --print-architecture)

# The Debian mirror: the first deb822 entry or sources.list line serving $suite.
mirror=$(cat /etc/apt/sources.list.d/*.sources 2> /dev/null | awk -v want="$suite" '
    /^$/ { if (uri != "" && ok) { print uri; exit } uri = ""; ok = 0; next }
    tolower($1) == "uris:" { uri = $2 }
    tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == want) ok = 1 }
    END { if (uri != "" && ok) print uri }' | head -n 1)
if [ -z "$mirror" ]; then
    mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2> /dev/null |
        awk -v want="$suite" '$1 == "deb" && $0 ~ (" " want " ") { for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) { print $i; exit } }')
fi
[ -n "$mirror" ] || { echo "no Debian mirror for $suite in the host's apt configuration" >&2; exit 1; }

# --- scratch space, removed (and unmounted) on exit ---------------------------
work=$(mktemp -d /var/tmp/osbuild-bench-debian.XXXXXX)
cleanup() {
    set +e
    # mmdebstrap unmounts on its own and mkosi works in its own mount
    # namespace; this is for an interrupted run.
    findmnt -rn -o TARGET | grep -F "$work/" | sort -r | while read -r m; do umount -l "$m"; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
store=$work/store

now() { date +%s%N; }
secs() { awk -v ns="$1" 'BEGIN { printf "%.1f", ns / 1e9 }'; }
. bench/timing.sh
# timed LOG CMD...: runs CMD with its output in LOG, prints the wall time (ns).
timed() {
    local log=$1 s e
    shift
    s=$(now)
    if ! "$@" > "$log" 2>&1; then
        echo "FAILED: $*" >&2
        tail -n 40 "$log" >&2
        return 1
    fi
    e=$(now)
    echo $((e - s))
}
say() { echo "[$(date +%T)] $*" >&2; }
# settle: before each timed run, the previous run's deletions and writes
# reach the disk, so no run pays for another's.
settle() { sync; }

# installed TREE: how many packages dpkg has installed there.
installed() { grep -c '^Status: install ok installed' "$1/var/lib/dpkg/status" || true; }
# osbuild's stage-end events of a build log, as "NAME STATUS MS" lines.
stage_ends() { jq -r 'select(.type == "stage-end") | "\(.name) \(.status) \(.duration_ms)"' "$1" 2> /dev/null; }

# --- osbuild -------------------------------------------------------------------
# The warm variant: the last stage (machine-id) changed.
jq '(.stages[-1].options["first-boot"]) |= (if . == "no" then "yes" else "no" end)' "$manifest" > "$work/variant.json"
[ "$(jq -r '.stages[-1].name' "$work/variant.json")" = org.osbuild.machine-id ] ||
    { echo "the manifest's last stage is not machine-id" >&2; exit 1; }

say "osbuild: untimed warm-up build (fills the package cache)"
timed "$work/warmup.log" "$bin" --store "$store" build --json -o "$work/out-warmup" "$manifest" > /dev/null
rm -rf "$work/out-warmup"

cold=() warm=() cold_log=() warm_log=()
osbuild_run() { # $1 = run number
    local r=$1 t
    rm -rf "$store/objects" "$store/refs" "$store/tmp"
    settle
    say "osbuild: cold build $r/$runs (warm package cache)"
    t=$(timed "$work/cold-$r.log" "$bin" --store "$store" build --json -o "$work/out-cold" "$manifest")
    cold+=("$t") cold_log+=("$work/cold-$r.log")
    settle
    say "osbuild: warm rebuild $r/$runs (last stage changed)"
    t=$(timed "$work/warm-$r.log" "$bin" --store "$store" build --json -o "$work/out-warm" "$work/variant.json")
    warm+=("$t") warm_log+=("$work/warm-$r.log")
    [ -s "$work/out-cold/$(jq -r '.assembler.options.filename' "$manifest")" ] || { echo "no cold image" >&2; exit 1; }
    if [ "$r" = "$runs" ]; then
        osbuild_img=$(stat -c %s "$work/out-cold/"*.qcow2)
        # The tree is a stack of layers (objects/ID/tree, see src/store):
        # dpkg's status is in the apt stage's layer; the size is their sum.
        apt_obj=$(jq -r 'select(.type == "stage-end" and .name == "org.osbuild.apt") | .id' "$work/cold-$r.log")
        last_obj=$(jq -r 'select(.type == "stage-end" and .kind == "stage") | .id' "$work/cold-$r.log" | tail -n 1)
        osbuild_pkgs=$(installed "$store/objects/$apt_obj/tree")
        osbuild_du=$(jq -r '.layers[]' "$store/objects/$last_obj/meta.json" |
            sed "s|^|$store/objects/|; s|\$|/tree|" | xargs du -scm | tail -n 1 | cut -f1)
    fi
    rm -rf "$work/out-cold" "$work/out-warm"
}

# --- the floor: the same steps by hand --------------------------------------
say "floor: preparing the package cache copy (untimed)"
debs=$work/floor-debs lists=$work/floor-lists
mkdir -p "$debs" "$lists"
for f in "$store"/cache/deb/debs/*.deb; do
    name=$(dpkg-deb --showformat='${Package}_${Version}_${Architecture}' -W "$f")
    cp "$f" "$debs/${name//:/%3a}.deb"
done
cp "$store"/cache/deb/lists/* "$lists/" 2> /dev/null || true

# Files the manifest's files stage writes: in place before the kernel and
# initramfs-tools are installed (mmdebstrap's essential hook runs before the
# non-essential packages are installed).
files=$work/floor-files
mkdir -p "$files"
jq -c '.stages[] | select(.name == "org.osbuild.files") | .options.files[]' "$manifest" | while read -r f; do
    p=$files/$(jq -r '.path' <<< "$f")
    mkdir -p "$(dirname "$p")"
    jq -j '.content' <<< "$f" > "$p"
done
user=$(jq -r '.stages[] | select(.name == "org.osbuild.users") | .options.users | keys[0]' "$manifest")
user_desc=$(jq -r --arg u "$user" '.stages[] | select(.name == "org.osbuild.users") | .options.users[$u].description // ""' "$manifest")
user_shell=$(jq -r --arg u "$user" '.stages[] | select(.name == "org.osbuild.users") | .options.users[$u].shell // "/bin/bash"' "$manifest")
user_pw=$(jq -r --arg u "$user" '.stages[] | select(.name == "org.osbuild.users") | .options.users[$u].password // "*"' "$manifest")
cat > "$work/floor-customize.sh" <<EOF
#!/bin/sh
# The manifest's configuration stages, by hand.
set -e
root=\$1
rm -f "\$root"/var/cache/apt/archives/*.deb
rm -rf "\$root"/var/lib/apt/lists/*
echo '$hostname' > "\$root/etc/hostname"
chroot "\$root" useradd -m -c '$user_desc' -s '$user_shell' -p '$user_pw' '$user'
echo 'UUID=$uuid / ext4 errors=remount-ro 0 1' > "\$root/etc/fstab"
kver=\$(ls "\$root/boot" | sed -n 's/^vmlinuz-//p' | sort -V | tail -n 1)
mkdir -p "\$root/boot/grub"
cat > "\$root/boot/grub/grub.cfg" <<CFG
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=1
search --no-floppy --fs-uuid $uuid --set=root
menuentry 'Debian GNU/Linux, with Linux \$kver' {
	insmod gzio
	insmod part_msdos
	insmod ext2
	search --no-floppy --fs-uuid $uuid --set=root
	linux	/boot/vmlinuz-\$kver root=UUID=$uuid ro $kernel_opts console=tty0 console=ttyS0,115200
	initrd	/boot/initrd.img-\$kver
}
CFG
printf 'uninitialized\n' > "\$root/etc/machine-id"
EOF
grub_modules="part_msdos part_gpt ext2 search search_fs_uuid search_fs_file search_label normal configfile linux echo test gzio serial terminal halt reboot loadenv ls cat all_video minicmd sleep true"

floor_tree() { # $1 = tree
    mmdebstrap --mode=root --variant="$variant" --architectures="$arch" --components=main \
        --include="$packages" \
        --dpkgopt=force-unsafe-io --dpkgopt=force-confdef --dpkgopt=force-confold \
        --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
        --skip=download/empty --skip=essential/unlink \
        --setup-hook="mkdir -p \"\$1/var/cache/apt/archives\" \"\$1/var/lib/apt/lists\" && cp $debs/*.deb \"\$1/var/cache/apt/archives/\" && { cp $lists/* \"\$1/var/lib/apt/lists/\" 2>/dev/null || true; }" \
        --essential-hook="cp -a $files/. \"\$1/\"" \
        --customize-hook="sh $work/floor-customize.sh \"\$1\"" \
        "$suite" "$1" "$mirror"
}
floor_disk() { # $1 = tree, $2 = raw image, $3 = scratch dir
    local tree=$1 raw=$2 tmp=$3 start psize grubdir
    truncate -s "$size" "$raw"
    printf 'label: dos\nlabel-id: %s\nunit: sectors\ntype=83, bootable\n' "$ptuuid" |
        sfdisk -q --no-reread --no-tell-kernel --wipe never "$raw"
    read -r start psize < <(sfdisk --json "$raw" | jq -r '.partitiontable.partitions[0] | "\(.start) \(.size)"')
    mkfs.ext4 -q -F -t ext4 -U "$uuid" \
        -E "offset=$((start * 512)),hash_seed=$uuid,nodiscard,assume_storage_prezeroed=1" \
        -d "$tree" "$raw" "$((psize / 2))k"
    grubdir=/usr/lib/grub/i386-pc
    [ -f "$tree/usr/lib/grub/i386-pc/moddep.lst" ] && grubdir=$tree/usr/lib/grub/i386-pc
    printf 'search --no-floppy --fs-uuid --set=root %s\nset prefix=($root)/boot/grub\n' "$uuid" > "$tmp/early.cfg"
    # shellcheck disable=SC2086
    grub-mkimage -O i386-pc -d "$grubdir" -p /boot/grub -c "$tmp/early.cfg" -o "$tmp/core.img" biosdisk boot $grub_modules
    # boot.img in the MBR (440 bytes), core.img at sector 1, patched as grub-install does.
    dd if="$grubdir/boot.img" of="$raw" bs=440 count=1 conv=notrunc status=none
    printf '\001\000\000\000\000\000\000\000' | dd of="$raw" bs=1 seek=$((0x5c)) conv=notrunc status=none
    printf '\220\220' | dd of="$raw" bs=1 seek=$((0x66)) conv=notrunc status=none
    dd if="$tmp/core.img" of="$raw" bs=512 seek=1 conv=notrunc status=none
}
floor_convert() { # $1 = raw, $2 = qcow2
    qemu-img convert -O qcow2 -c -o compression_type=zstd "$1" "$2"
}

floor=() floor_mm=() floor_disk_t=() floor_conv=()
floor_run() { # $1 = run number
    local r=$1 f=$work/floor-$1 a b c
    settle
    say "floor: run $r/$runs"
    mkdir -p "$f/tmp"
    a=$(timed "$f/mmdebstrap.log" floor_tree "$f/tree")
    b=$(timed "$f/disk.log" floor_disk "$f/tree" "$f/disk.raw" "$f/tmp")
    c=$(timed "$f/convert.log" floor_convert "$f/disk.raw" "$f/disk.qcow2")
    floor_mm+=("$a") floor_disk_t+=("$b") floor_conv+=("$c") floor+=("$((a + b + c))")
    if [ "$r" = "$runs" ]; then
        floor_img=$(stat -c %s "$f/disk.qcow2")
        floor_pkgs=$(installed "$f/tree")
        floor_du=$(du -sm "$f/tree" | cut -f1)
        floor_initrd=$(ls "$f/tree/boot" | grep -c '^initrd.img-' || true)
    fi
    rm -rf "$f"
}

# --- mkosi ---------------------------------------------------------------------
mk_total=() mk_only=() mk_initrd=()
if [ -z "$mkosi_skip" ] && command -v mkosi > /dev/null; then
    mk=$work/mkosi
    mkdir -p "$mk/cwd" "$mk/cache" "$mk/skel/etc/dpkg/dpkg.cfg.d" "$mk/skel/etc/apt"
    cp -a "$files/." "$mk/skel/"
    # Copied in after debootstrap, before apt: dpkg keeps the initramfs
    # configuration (as the apt stage's --force-confold), and apt uses only
    # the --local-mirror entry (mirror.list), not debootstrap's sources.list
    # naming the same mirror (apt rejects the two: Conflicting values for
    # Trusted). mkosi restores sources.list afterwards.
    printf 'force-confdef\nforce-confold\n' > "$mk/skel/etc/dpkg/dpkg.cfg.d/90confold"
    : > "$mk/skel/etc/apt/sources.list"
    mkosi_args=(--distribution debian --release "$suite" --mirror "$mirror" --local-mirror "$mirror"
        --format directory --output "$mk/out" --cache "$mk/cache" --workspace-dir "$mk/ws"
        --with-docs --skeleton-tree "$mk/skel" --hostname "$hostname" -f)
    IFS=, read -ra pk <<< "$packages"
    for p in "${pk[@]}"; do mkosi_args+=(-p "$p"); done
    mkosi_build() { mkdir -p "$mk/ws" && (cd "$mk/cwd" && mkosi "${mkosi_args[@]}" build); }
    mkosi_initrd() {
        local v
        for v in $(ls "$mk/out/usr/lib/modules"); do
            chroot "$mk/out" update-initramfs -c -k "$v"
        done
    }
    mkosi_run() { # $1 = run number
        local r=$1 a b
        settle
        say "mkosi: run $r/$runs"
        a=$(timed "$mk/build-$r.log" mkosi_build)
        b=$(timed "$mk/initrd-$r.log" mkosi_initrd)
        mk_only+=("$a") mk_initrd+=("$b") mk_total+=("$((a + b))")
        if [ "$r" = "$runs" ]; then
            mk_pkgs=$(installed "$mk/out")
            mk_du=$(du -sm "$mk/out" | cut -f1)
            mk_reused=$(grep -c '^I: Validating' "$mk/build-$r.log" || true)
            # debootstrap's "I: Retrieving PKG VERSION" and apt's
            # "Get:N URL SUITE/COMP ARCH PKG ARCH VERSION [SIZE]" lines.
            mk_fetched=$(awk '/^I: Retrieving / && !/Release|Packages/ { n++ }
                $1 ~ /^Get:/ && NF >= 9 { n++ } END { print n + 0 }' "$mk/build-$r.log")
        fi
        rm -rf "$mk/out" "$mk/out.manifest" "$mk/ws"
    }
    say "mkosi: untimed warm-up build (fills its package cache)"
    if timed "$mk/warmup.log" mkosi_build > /dev/null; then
        rm -rf "$mk/out" "$mk/out.manifest" "$mk/ws"
    else
        mkosi_skip="mkosi failed (see above)"
    fi
elif [ -z "$mkosi_skip" ]; then
    mkosi_skip="mkosi is not installed"
fi

# --- the runs, interleaved ------------------------------------------------------
# One round of each in turn, so a slow spell of the machine (its timings drift
# by a third from one minute to the next) falls on all of them alike.
for ((r = 1; r <= runs; r++)); do
    osbuild_run "$r"
    floor_run "$r"
    [ -n "$mkosi_skip" ] || mkosi_run "$r"
done

# --- report --------------------------------------------------------------------
med() { printf '%s\n' "$@" | median; }
cold_ns=$(med "${cold[@]}")
warm_ns=$(med "${warm[@]}")
floor_ns=$(med "${floor[@]}")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

echo
echo "Debian image benchmark: $(jq -r .name "$manifest"), $suite $variant + $packages"
echo "  $(nproc) cores, median of $runs run(s), mirror from the host's apt sources, warm package caches"
echo
printf '  %-52s %8s\n' "build" "seconds"
printf '  %-52s %8s\n' "osbuild cold (no objects, warm package cache)" "$(secs "$cold_ns")"
printf '  %-52s %8s\n' "osbuild warm (last stage changed)" "$(secs "$warm_ns")"
printf '  %-52s %8s\n' "floor (mmdebstrap + disk + qemu-img)" "$(secs "$floor_ns")"
printf '  %-52s %8s\n' "  mmdebstrap (tree + config hooks)" "$(secs "$(med "${floor_mm[@]}")")"
printf '  %-52s %8s\n' "  sfdisk + mkfs.ext4 -d + grub" "$(secs "$(med "${floor_disk_t[@]}")")"
printf '  %-52s %8s\n' "  qemu-img convert (qcow2, zstd)" "$(secs "$(med "${floor_conv[@]}")")"
if [ -z "$mkosi_skip" ]; then
    mk_ns=$(med "${mk_total[@]}")
    printf '  %-52s %8s\n' "mkosi directory + update-initramfs" "$(secs "$mk_ns")"
    printf '  %-52s %8s\n' "  mkosi build (Format=directory, INITRD=No)" "$(secs "$(med "${mk_only[@]}")")"
    printf '  %-52s %8s\n' "  chroot update-initramfs -c" "$(secs "$(med "${mk_initrd[@]}")")"
else
    printf '  %-52s %8s\n' "mkosi" "skipped"
fi
echo
printf '  %-52s %8s   (target <= 1.1)\n' "cold / floor" "$(ratio "$cold_ns" "$floor_ns")"
if [ -z "$mkosi_skip" ]; then
    printf '  %-52s %8s   (target <= 0.8)\n' "cold / mkosi (with initramfs)" "$(ratio "$cold_ns" "$mk_ns")"
    printf '  %-52s %8s\n' "cold / mkosi (mkosi alone, no initramfs)" "$(ratio "$cold_ns" "$(med "${mk_only[@]}")")"
else
    echo "  cold / mkosi: not measured: $mkosi_skip"
fi
printf '  %-52s %8s s\n' "warm rebuild" "$(secs "$warm_ns")"

echo
echo "  osbuild stages (median ms over runs; engine = wall time - sum of stages):"
printf '    %-28s %10s %10s\n' stage cold warm
for n in $(jq -r '.stages[].name, .assembler.name' "$manifest" | awk '!seen[$0]++'); do
    c=$(for l in "${cold_log[@]}"; do stage_ends "$l" | awk -v n="$n" '$1 == n { s += $3 } END { print s + 0 }'; done | median)
    w=$(for l in "${warm_log[@]}"; do stage_ends "$l" | awk -v n="$n" '$1 == n && $2 != "cached" { s += $3 } END { print s + 0 }'; done | median)
    printf '    %-28s %10s %10s\n' "$n" "$c" "$w"
done
stage_sum() { # log...: the sum of each log's stage durations (ms)
    local l
    for l in "$@"; do
        stage_ends "$l" | awk '{ s += $3 } END { print s + 0 }'
    done
}
c_sum=$(stage_sum "${cold_log[@]}" | median)
w_sum=$(stage_sum "${warm_log[@]}" | median)
printf '    %-28s %10s %10s\n' "engine (wall - stages)" "$((cold_ns / 1000000 - c_sum))" "$((warm_ns / 1000000 - w_sum))"
ext4_line=$(jq -r 'select(.type == "log") | .text' "${cold_log[-1]}" | grep -o 'partition 1 .*s$' | head -n 1 || true)
[ -n "$ext4_line" ] && echo "    assembler: $ext4_line (mkfs.ext4 -d + timestamp rewrite)"

echo
echo "  results (last run):"
printf '    %-10s %8s %12s %12s %10s\n' "" packages "tree MB" "qcow2 bytes" ""
printf '    %-10s %8s %12s %12s\n' osbuild "${osbuild_pkgs:-?}" "${osbuild_du:-?}" "${osbuild_img:-?}"
printf '    %-10s %8s %12s %12s %10s\n' floor "${floor_pkgs:-?}" "${floor_du:-?}" "${floor_img:-?}" "initrd: ${floor_initrd:-?}"
if [ -z "$mkosi_skip" ]; then
    printf '    %-10s %8s %12s %12s %10s\n' mkosi "${mk_pkgs:-?}" "${mk_du:-?}" "-" "debs reused/fetched: ${mk_reused:-?}/${mk_fetched:-?}"
fi

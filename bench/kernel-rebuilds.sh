#!/bin/bash
# Whole-kernel rebuilds through `ltocache run --mode add`, checked and timed
# against the same rebuilds without it, on a tree bench/prepare-tinyconfig.sh
# built (Linux >= 6.10 passes lld no cache):
#   - an edited .c file: vmlinux byte-identical with and without ltocache,
#     and the warm rebuild's ThinLTO link mostly hits;
#   - the edit reverted: byte-identical to the first build;
#   - a .config change: vmlinux byte-identical with and without ltocache, the
#     config embedded with .incbin (IKCONFIG) the new one
#     (scripts/extract-ikconfig), and the ThinLTO link's misses and the
#     rebuild's time as a ratio to the warm edited-.c rebuild (a changed
#     .incbin file misses only the modules that embed it: src/shim/seed.ts).
# Leaves the tree's sources and .config as it found them.
#
# Usage: bench/kernel-rebuilds.sh TREE     (about 5 minutes on 2 cores)
set -euo pipefail
tree=$(cd "$1" && pwd)
repo=$(cd "$(dirname "$0")/.." && pwd)
ltocache() { node "$repo/bin/ltocache" "$@"; }
work=$(mktemp -d)
cd "$tree"
cp kernel/panic.c "$work/panic.c"
cp .config "$work/config"
restore() {
	cp "$work/panic.c" kernel/panic.c
	cp "$work/config" .config
	rm -rf "$work"
}
trap restore EXIT
export KBUILD_BUILD_TIMESTAMP=2026-01-01 KBUILD_BUILD_VERSION=1 KBUILD_BUILD_USER=ltocache KBUILD_BUILD_HOST=bench
export LTOCACHE_DIR="$work/root" LTOCACHE_AUTO_PRUNE=0
make_vmlinux() { "$@" make LLVM=1 ARCH=x86_64 -j"$(nproc)" vmlinux >"$work/build.log" 2>&1 || { tail -30 "$work/build.log" >&2; exit 1; }; }
build() { make_vmlinux; }
through_ltocache() { make_vmlinux ltocache run --mode add --; }
# Sets ms to how long the command took.
timed() {
	local start end
	start=$(date +%s%N)
	"$@"
	end=$(date +%s%N)
	ms=$(((end - start) / 1000000))
}
# The ThinLTO misses and the links' milliseconds so far (ltocache stats), as "misses ms".
# shellcheck disable=SC2016 # a JavaScript template, not the shell's
tally() { ltocache stats --json | node -e 'const s = JSON.parse(require("fs").readFileSync(0, "utf8")); console.log(s.totalMisses, Math.round(s.kernels.flatMap((k) => k.keys).reduce((ms, k) => ms + k.linkMs, 0)))'; }
# What a rebuild between two tallies missed, and how long its ThinLTO links took against the whole rebuild.
links_of() {
	local m0 t0 m1 t1
	read -r m0 t0 <<<"$1"
	read -r m1 t1 <<<"$2"
	echo "$((m1 - m0)) ThinLTO misses; its links took $((t1 - t0)) ms of the $ms ms"
}
config_change() {
	scripts/config --set-str DEFAULT_HOSTNAME ltocache-bench
	make LLVM=1 ARCH=x86_64 olddefconfig >/dev/null
}
edit() { sed -i 's/Kernel panic - not syncing: /Kernel panic - not syncing (ltocache bench): /' kernel/panic.c; }
check() { if cmp -s "$1" "$2"; then echo "  ok: $3"; else echo "  FAILED: $3"; exit 1; fi; }

build
cp vmlinux "$work/vmlinux.first"
edit
timed build
echo "an edited kernel/panic.c, no ltocache:           $ms ms"
cp vmlinux "$work/vmlinux.edited"
cp "$work/panic.c" kernel/panic.c
timed through_ltocache
echo "reverted, through ltocache (cache cold):         $ms ms"
check vmlinux "$work/vmlinux.first" "reverted build through ltocache byte-identical to the first build"
edit
before=$(tally)
timed through_ltocache
edited_ms=$ms
echo "edited again, through ltocache (cache warm):     $ms ms"
echo "  $(links_of "$before" "$(tally)")"
check vmlinux "$work/vmlinux.edited" "edited build through ltocache byte-identical to the uncached edited build"
# shellcheck disable=SC2016 # a JavaScript template, not the shell's
ltocache stats --json | node -e 'const s = JSON.parse(require("fs").readFileSync(0, "utf8")); console.log(`  hits ${s.totalHits}, misses ${s.totalMisses} over ${s.totalLinks} links`); if (s.totalHits <= s.totalMisses / 2) process.exit(1);'
cp "$work/panic.c" kernel/panic.c
timed through_ltocache
echo "reverted, through ltocache (cache warm):         $ms ms"
check vmlinux "$work/vmlinux.first" "reverted build through ltocache byte-identical to the first build"
config_change
timed build
echo "a .config change, no ltocache:                   $ms ms"
cp vmlinux "$work/vmlinux.config"
cp "$work/config" .config
timed through_ltocache
echo "the .config reverted, through ltocache (warm):   $ms ms"
check vmlinux "$work/vmlinux.first" "build with the .config reverted through ltocache byte-identical to the first build"
config_change
before=$(tally)
timed through_ltocache
echo "the .config change again, through ltocache:      $ms ms"
echo "  $(links_of "$before" "$(tally)"); $(node -e "console.log(($ms / $edited_ms).toFixed(2))")x the warm edited-.c rebuild"
check vmlinux "$work/vmlinux.config" ".config change through ltocache byte-identical to the uncached .config build"
if scripts/extract-ikconfig vmlinux | grep -q '^CONFIG_DEFAULT_HOSTNAME="ltocache-bench"$'; then
	echo "  ok: the embedded config is the new one"
else
	echo "  FAILED: the embedded config is not the new one"
	exit 1
fi
# Back to the tree as it was: the restored .config, rebuilt without ltocache.
cp "$work/config" .config
build

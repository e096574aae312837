#!/bin/sh
# Build a whole Clang ThinLTO kernel >= 6.10 (Debian's linux-source-6.12,
# tinyconfig for x86_64 plus LTO_CLANG_THIN, IKCONFIG and PROC_FS) for
# `npm run bench -- --only kernel`: its vmlinux.o link is what add mode
# speeds up. 10-20 minutes on 2 cores, once; kept in CACHE_DIR keyed by the
# package version. Needs the Debian packages linux-source-6.12 clang lld
# llvm bc flex bison libelf-dev libssl-dev.
#
# Usage: prepare-tinyconfig.sh CACHE_DIR   (prints the tree's path)
set -eu
cache=$1
version=$(dpkg-query -W -f='${Version}' linux-source-6.12)
tree="$cache/linux-tinyconfig-$version"
mkdir -p "$cache"
exec 9>"$cache/.lock-tinyconfig"
flock 9
if [ -f "$tree/.ltocache-prepared" ]; then
	echo "$tree"
	exit 0
fi
rm -rf "$tree"
mkdir -p "$tree"
tar -xJf /usr/src/linux-source-6.12.tar.xz -C "$tree" --strip-components=1
cd "$tree"
# Fixed, so that two builds of the same sources give the same vmlinux (init/version.o embeds them).
export KBUILD_BUILD_TIMESTAMP=2026-01-01 KBUILD_BUILD_VERSION=1 KBUILD_BUILD_USER=ltocache KBUILD_BUILD_HOST=bench
{
	make LLVM=1 ARCH=x86_64 tinyconfig
	scripts/config -d LTO_NONE -e LTO_CLANG_THIN -e IKCONFIG -e IKCONFIG_PROC -e PROC_FS
	make LLVM=1 ARCH=x86_64 olddefconfig
	grep -q '^CONFIG_LTO_CLANG_THIN=y' .config
	make LLVM=1 ARCH=x86_64 -j"$(nproc)" vmlinux
} >"$cache/prepare-tinyconfig.log" 2>&1 || { tail -50 "$cache/prepare-tinyconfig.log" >&2; exit 1; }
touch .ltocache-prepared
echo "$tree"

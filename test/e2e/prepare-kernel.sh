#!/bin/sh
# Prepare a Clang ThinLTO kernel tree for external-module builds, the way an
# installed 5.12-6.9 tree looks (see FIELD-NOTES): Debian's linux-source-6.1,
# the --thinlto-cache-dir flag restored, LTO_CLANG_THIN, modules_prepare.
#
# Usage: prepare-kernel.sh CACHE_DIR   (prints the tree's path)
# The tree is kept in CACHE_DIR keyed by the package version, so only the
# first run pays for it (~1 minute on 2 cores). Run as root: the tree ends up
# owned by root and not writable by anyone else.
set -eu
cache=$1
version=$(dpkg-query -W -f='${Version}' linux-source-6.1)
tree="$cache/linux-source-$version"
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if [ -f "$tree/.ltocache-prepared" ]; then
	echo "$tree"
	exit 0
fi
# Prepared in place (generated files may record the path); the marker,
# written last, says the tree is complete.
rm -rf "$tree"
mkdir -p "$tree"
tar -xJf /usr/src/linux-source-6.1.tar.xz -C "$tree" --strip-components=1
cd "$tree"
lto='^CC_FLAGS_LTO[[:space:]]*:= -flto=thin -fsplit-lto-unit$'
grep -q "$lto" Makefile || { echo "prepare-kernel: no '$lto' line in the Makefile" >&2; exit 1; }
sed -i "/$lto/a KBUILD_LDFLAGS += --thinlto-cache-dir=\$(extmod_prefix).thinlto-cache" Makefile
grep -q 'thinlto-cache-dir' Makefile
{
	make LLVM=1 defconfig
	scripts/config -d LTO_NONE -e LTO_CLANG_THIN -d DEBUG_INFO_BTF
	make LLVM=1 olddefconfig
	grep -q '^CONFIG_LTO_CLANG_THIN=y' .config
	make LLVM=1 -j"$(nproc)" modules_prepare
} >"$cache/prepare.log" 2>&1 || { tail -50 "$cache/prepare.log" >&2; exit 1; }
chmod -R go-w .
touch .ltocache-prepared
echo "$tree"

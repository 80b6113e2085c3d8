#!/usr/bin/env bash
# Cross-build libuv (Debian's source package libuv1) for x86_64-w64-mingw32, as a static library,
# into a cache outside the source tree, once. Rebuilt only when this recipe changes.
#
#   bench/libuv-mingw.sh [PREFIX]     PREFIX default: ~/.cache/wsx/libuv-mingw
#
# Result: PREFIX/include/uv.h (+ uv/), PREFIX/lib/libuv.a, PREFIX/VERSION.
# Link a program with: -IPREFIX/include PREFIX/lib/libuv.a -lpsapi -luser32 -ladvapi32 -liphlpapi
#                      -luserenv -lws2_32 -ldbghelp -lole32 -lshell32
# Needs cmake, ninja, the mingw-w64 C compiler and patch (bench/setup.sh installs them); adds a
# deb-src entry to apt's sources when there is none (root, the first time only).
set -euo pipefail

HOST=x86_64-w64-mingw32
PREFIX=${1:-${WSX_CACHE:-$HOME/.cache/wsx}/libuv-mingw}
STAMP=$PREFIX/.recipe
RECIPE=$(sha256sum "$0" | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$RECIPE" ] && [ -f "$PREFIX/lib/libuv.a" ]; then
    exit 0
fi

die() { echo "libuv-mingw: $*" >&2; exit 1; }
log_fail() { tail -40 "$1" >&2; die "$2 (log: $1)"; }

# apt-get source needs a deb-src entry: add one like the system's first binary source (the same
# file cmake/criterion-mingw.sh would add), when there is none.
if ! grep -qsr '^[^#]*deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/ &&
   ! grep -qsr '^Types:.*deb-src' /etc/apt/sources.list.d/; then
    [ "$(id -u)" = 0 ] || die "no deb-src entry in apt's sources and not root to add one"
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        awk 'BEGIN { RS = ""; ORS = "\n\n" } NR == 1 { sub(/Types:[ \t]*deb/, "Types: deb-src"); print }' \
            /etc/apt/sources.list.d/debian.sources >/etc/apt/sources.list.d/wsx-deb-src.sources
    elif [ -f /etc/apt/sources.list ]; then
        sed -n 's/^deb \(.*\)$/deb-src \1/p' /etc/apt/sources.list >/etc/apt/sources.list.d/wsx-deb-src.list
    else
        die "no apt sources to derive a deb-src entry from"
    fi
    apt-get update -qq || die "apt-get update failed"
fi

WORK=$PREFIX.work
rm -rf "$WORK" "$PREFIX"
mkdir -p "$WORK/dl" "$WORK/src" "$PREFIX/lib"
echo "wsx: building libuv for MinGW into $PREFIX (once; about a minute)"

cd "$WORK/dl"
# Only the tarballs are used: apt-get's status is not trusted (some mirrors answer 404 for one
# part of a source package); the upstream tarball must be there.
apt-get source --download-only -qq libuv1 >/dev/null 2>&1 || true
orig=$(ls libuv1_*.orig.tar.* 2>/dev/null | head -n1)
[ -n "$orig" ] || die "could not download the source package libuv1"
tar -xf "$orig" -C "$WORK/src" --strip-components=1
# Debian's patches (security fixes among them), in the order of their series file, when the
# Debian part came too.
deb=$(ls libuv1_*.debian.tar.* 2>/dev/null | head -n1 || true)
if [ -n "$deb" ]; then
    tar -xf "$deb" -C "$WORK/src"
    if [ -f "$WORK/src/debian/patches/series" ]; then
        sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$WORK/src/debian/patches/series" | while read -r p _; do
            patch -d "$WORK/src" -p1 -s -N <"$WORK/src/debian/patches/$p" >/dev/null ||
                die "Debian patch $p does not apply"
        done
    fi
fi
version=$(sed -n 's/^#define UV_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\).*/\2/p' \
    "$WORK/src/include/uv/version.h" | paste -sd.)

cat >"$WORK/toolchain.cmake" <<TC
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)
set(CMAKE_C_COMPILER $HOST-gcc)
set(CMAKE_RC_COMPILER $HOST-windres)
set(CMAKE_FIND_ROOT_PATH /usr/$HOST)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
TC
log=$WORK/build.log
cmake -S "$WORK/src" -B "$WORK/build" -G Ninja -DCMAKE_TOOLCHAIN_FILE="$WORK/toolchain.cmake" \
    -DCMAKE_BUILD_TYPE=Release -DLIBUV_BUILD_TESTS=OFF -DLIBUV_BUILD_BENCH=OFF >"$log" 2>&1 ||
    log_fail "$log" "libuv configure failed"
ninja -C "$WORK/build" uv_a >>"$log" 2>&1 || log_fail "$log" "libuv build failed"

cp -r "$WORK/src/include" "$PREFIX/"
cp "$WORK/build/libuv_a.a" "$PREFIX/lib/libuv.a"
echo "$version" >"$PREFIX/VERSION"
rm -rf "$WORK"
echo "$RECIPE" >"$STAMP"
echo "wsx: libuv $version for MinGW ready in $PREFIX"

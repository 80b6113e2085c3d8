#!/usr/bin/env bash
# Cross-build Criterion 2.4.1 for x86_64-w64-mingw32 from Debian's source packages,
# into a cache outside the source tree, once. Rebuilt only when this recipe changes.
#
#   cmake/criterion-mingw.sh [PREFIX]      PREFIX default: ~/.cache/wsx/criterion-mingw-2.4.1
#
# Result: PREFIX/include/criterion/*, PREFIX/lib/libcriterion.dll.a, PREFIX/bin/libcriterion-3.dll
# (tests link with -lcriterion and need the DLL on WINEPATH: cmake/wine-run.in sets it).
# Dependencies: criterion boxfort nanomsg nanopb libffi debugbreak, and libgit2 pcre2 http-parser
# for assertion diffs (without diffs a failing eq(mem, ...) crashes Criterion 2.4.1's runner).
# Needs root the first time only, to add a deb-src entry when the system has none.
set -euo pipefail

HOST=x86_64-w64-mingw32
PREFIX=${1:-${WSX_CACHE:-$HOME/.cache/wsx}/criterion-mingw-2.4.1}
STAMP=$PREFIX/.recipe
RECIPE=$(sha256sum "$0" | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$RECIPE" ] && [ -f "$PREFIX/bin/libcriterion-3.dll" ]; then
    exit 0
fi

JOBS=${JOBS:-$(nproc)}
WORK=$PREFIX.work
SRC=$WORK/src
BLD=$WORK/build
SYSROOT=/usr/$HOST
T0=$(date +%s)
step() { printf 'criterion-mingw [%4ds] %s\n' "$(($(date +%s) - T0))" "$*"; }
die() { echo "criterion-mingw: $*" >&2; exit 1; }
log_fail() { tail -40 "$1" >&2; die "$2 (log: $1)"; }

echo "wsx: building Criterion 2.4.1 for MinGW into $PREFIX (once; about 5 minutes)"

# apt-get source needs a deb-src line; derive it from the first binary source of the system.
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

rm -rf "$WORK" "$PREFIX"
mkdir -p "$SRC/dl" "$BLD" "$PREFIX"

step "download Debian sources"
cd "$SRC/dl"
for p in criterion boxfort nanomsg nanopb libffi debugbreak libgit2 pcre2 http-parser; do
    # Only the upstream tarball is used; some mirrors answer 404 for a .debian.tar.xz, so
    # apt-get's status is not trusted: the orig tarball must be there.
    apt-get source --download-only -qq "$p" >/dev/null 2>&1 || true
    orig=$(ls "${p}"_*.orig.tar.* 2>/dev/null | head -n1)
    [ -n "$orig" ] || die "could not download the source package $p"
    mkdir -p "$SRC/$p"
    tar -xf "$orig" -C "$SRC/$p" --strip-components=1
done
# Header donors: klib (khash.h, kvec.h; a Criterion submodule) ships in libslow5-dev; Debian's
# boxfort.h carries the BXF_DBG_FALLBACK API that Criterion 2.4.1 uses.
for d in libslow5-dev libboxfort-dev; do
    apt-get download -qq "$d" >/dev/null 2>&1 || true
    deb=$(ls "${d}"_*.deb 2>/dev/null | head -n1)
    [ -n "$deb" ] || die "could not download $d"
    mkdir -p "$SRC/$d" && dpkg-deb -x "$deb" "$SRC/$d"
done

cat >"$WORK/cross.txt" <<EOF
[binaries]
c = '$HOST-gcc'
ar = '$HOST-ar'
strip = '$HOST-strip'
windres = '$HOST-windres'
pkgconfig = 'pkg-config'
cmake = 'cmake'
exe_wrapper = 'wine'

[properties]
pkg_config_libdir = '$PREFIX/lib/pkgconfig'

[host_machine]
system = 'windows'
cpu_family = 'x86_64'
cpu = 'x86_64'
endian = 'little'
EOF
cat >"$WORK/toolchain.cmake" <<EOF
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)
set(CMAKE_C_COMPILER $HOST-gcc)
set(CMAKE_RC_COMPILER $HOST-windres)
set(CMAKE_FIND_ROOT_PATH $SYSROOT $PREFIX)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
EOF

step "libffi (theories)"
mkdir -p "$BLD/libffi" && cd "$BLD/libffi"
"$SRC/libffi/configure" --host=$HOST --prefix="$PREFIX" --disable-shared --enable-static \
    --disable-docs --disable-multi-os-directory >log 2>&1 || log_fail "$PWD/log" "libffi configure failed"
make -j"$JOBS" >>log 2>&1 && make install >>log 2>&1 || log_fail "$PWD/log" "libffi build failed"

step "pcre2, http-parser, libgit2 (assertion diffs)"
mkdir -p "$BLD/pcre2" && cd "$BLD/pcre2"
"$SRC/pcre2/configure" --host=$HOST --prefix="$PREFIX" --disable-shared --enable-static \
    --enable-pcre2-8 --disable-pcre2-16 --disable-pcre2-32 --disable-jit --disable-pcre2grep-libz \
    --disable-pcre2grep-libbz2 --disable-pcre2test-libreadline >log 2>&1 ||
    log_fail "$PWD/log" "pcre2 configure failed"
{ make -j"$JOBS" libpcre2-8.la && make install-libLTLIBRARIES install-includeHEADERS \
    install-nodist_includeHEADERS install-pkgconfigDATA; } >>log 2>&1 || log_fail "$PWD/log" "pcre2 build failed"

mkdir -p "$BLD/http-parser" && cd "$BLD/http-parser"
$HOST-gcc -O2 -c "$SRC/http-parser/http_parser.c" -o http_parser.o
$HOST-ar rcs "$PREFIX/lib/libhttp_parser.a" http_parser.o
cp "$SRC/http-parser/http_parser.h" "$PREFIX/include/"

mkdir -p "$BLD/libgit2" && cd "$BLD/libgit2"
cmake "$SRC/libgit2" -G Ninja -DCMAKE_TOOLCHAIN_FILE="$WORK/toolchain.cmake" \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$PREFIX" -DBUILD_SHARED_LIBS=OFF \
    -DBUILD_TESTS=OFF -DBUILD_CLI=OFF -DBUILD_EXAMPLES=OFF -DUSE_HTTPS=OFF -DUSE_SSH=OFF \
    -DUSE_WINHTTP=OFF -DUSE_GSSAPI=OFF -DREGEX_BACKEND=pcre2 -DUSE_HTTP_PARSER=system \
    -DUSE_BUNDLED_ZLIB=OFF -DZLIB_LIBRARY="$SYSROOT/lib/libz.a" -DZLIB_INCLUDE_DIR="$SYSROOT/include" \
    -DCMAKE_C_FLAGS=-DPCRE2_STATIC >log 2>&1 || log_fail "$PWD/log" "libgit2 configure failed"
{ ninja -j"$JOBS" && ninja install; } >>log 2>&1 || log_fail "$PWD/log" "libgit2 build failed"
# Static linking: meson reads only Libs, so every dependency goes there.
cat >"$PREFIX/lib/pkgconfig/libgit2.pc" <<EOF
prefix=$PREFIX
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: libgit2
Description: libgit2, static, $HOST
Version: 1.5.1
Libs: -L\${libdir} -lgit2 -lhttp_parser -lpcre2-8 $SYSROOT/lib/libz.a -lws2_32 -lsecur32 -lrpcrt4 -lcrypt32 -lole32 -ladvapi32
Cflags: -I\${includedir}
EOF

step "Criterion tree: submodules, subprojects, patches"
CR=$BLD/criterion-src
cp -a "$SRC/criterion" "$CR"
cp "$SRC/debugbreak/debugbreak.h" "$CR/dependencies/debugbreak/"
cp "$SRC/libslow5-dev/usr/include/slow5/klib/khash.h" "$SRC/libslow5-dev/usr/include/slow5/klib/kvec.h" \
    "$CR/dependencies/klib/"
for p in boxfort nanomsg nanopb; do cp -a "$SRC/$p" "$CR/subprojects/$p"; done
BF=$CR/subprojects/boxfort
cp "$SRC/libboxfort-dev/usr/include/boxfort.h" "$BF/include/boxfort.h"
grep -q BXF_DBG_ENABLE_FALLBACK "$BF/include/boxfort.h" || die "boxfort.h lacks BXF_DBG_ENABLE_FALLBACK"
sed -i 's/switch (sandbox->debug.debugger) {/switch (BXF_DBG_GET_DEBUGGER(sandbox->debug.debugger)) {/' \
    "$BF/src/sandbox-windows.c" "$BF/src/sandbox-posix.c"
# BoxFort's Windows timeout: mark the sandbox timed out before terminating it (else a timeout is
# sometimes reported as a crash), and delete its timers when the sandbox ends (upstream never
# does, and a late callback touches a freed sandbox).
cat >"$BF/src/timeout-windows.c" <<'EOF'
#include <windows.h>
#include <errno.h>

#include "config.h"
#include "sandbox.h"

#define BXFI_TIMEOUT_STATUS 0xEFFFFFFF

static void CALLBACK timeout_killer_fn(void *param, BOOLEAN fired)
{
    struct bxfi_sandbox *sb = param;

    (void) fired;
    if (WaitForSingleObject(sb->proc, 0) == WAIT_OBJECT_0)
        return;
    sb->props.status.timed_out = 1;
    TerminateProcess(sb->proc, BXFI_TIMEOUT_STATUS);
}

int bxfi_push_timeout(struct bxfi_sandbox *instance, double timeout)
{
    HANDLE timer;

    if (instance->ntimers >= (int) (sizeof instance->timers / sizeof instance->timers[0]))
        return -1;
    if (!CreateTimerQueueTimer(&timer, NULL, timeout_killer_fn, instance,
            (DWORD) (timeout * 1000), 0, WT_EXECUTEDEFAULT))
        return -1;
    instance->timers[instance->ntimers++] = timer;
    return 0;
}

void bxfi_cancel_timeout(struct bxfi_sandbox *instance)
{
    for (int i = 0; i < instance->ntimers; ++i)
        DeleteTimerQueueTimer(NULL, instance->timers[i], INVALID_HANDLE_VALUE);
    instance->ntimers = 0;
}

void bxfi_reset_timeout_killer(void)
{
}
EOF
sed -i 's|^    HANDLE waited;|    HANDLE timers[2];\n    int ntimers;\n\n    HANDLE waited;|' "$BF/src/sandbox-windows.h"
sed -i 's|^    instance->user_dtor = user_dtor;|    instance->user_dtor = user_dtor;\n    instance->ntimers   = 0;|' \
    "$BF/src/sandbox-windows.c"
grep -q 'ntimers;' "$BF/src/sandbox-windows.h" && grep -q 'ntimers   = 0;' "$BF/src/sandbox-windows.c" ||
    die "BoxFort timeout patch did not apply"
# nanopb's CMakeLists wants protoc even with the generator off; Criterion ships generated files.
sed -i "s|'-Dnanopb_BUILD_GENERATOR=OFF',|'-Dnanopb_BUILD_GENERATOR=OFF', '-Dnanopb_PROTOC_PATH=/bin/true',|" \
    "$CR/meson.build"
grep -q nanopb_PROTOC_PATH "$CR/meson.build" || die "meson.build patch did not apply"

step "Criterion (meson)"
meson setup "$BLD/criterion" "$CR" --cross-file "$WORK/cross.txt" --prefix="$PREFIX" \
    --buildtype=release -Di18n=disabled -Dc_link_args=-static-libgcc -Ddiffs=enabled \
    -Dtests=false -Dsamples=false -Dcxx-support=disabled >"$BLD/criterion.log" 2>&1 ||
    log_fail "$BLD/criterion.log" "Criterion meson setup failed"
{ ninja -C "$BLD/criterion" -j"$JOBS" && meson install -C "$BLD/criterion"; } >>"$BLD/criterion.log" 2>&1 ||
    log_fail "$BLD/criterion.log" "Criterion build failed"
[ -f "$PREFIX/bin/libcriterion-3.dll" ] || die "libcriterion-3.dll was not installed"

rm -rf "$WORK"
echo "$RECIPE" >"$STAMP"
step "done: $PREFIX"

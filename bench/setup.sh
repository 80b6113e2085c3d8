#!/usr/bin/env bash
# Everything `make bench` needs besides cmake/deps.sh: Debian packages, libuv for MinGW, and the
# programs: wsx-echo (Release, no tests), the Asio and libuv peers (.exe, run under Wine), the
# native epoll peer and the load generator.
#   bench/setup.sh          into bench/build/ (BENCH_BUILD overrides)
#   BENCH_WSX=tree          build wsx-echo from the working tree, not from the last commit
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${BENCH_BUILD:-bench/build}
HOST=x86_64-w64-mingw32
UV=${WSX_CACHE:-$HOME/.cache/wsx}/libuv-mingw

# The project's packages plus the bench's own, through the one installer (cmake/deps.sh):
# the Asio peer needs the posix-thread g++, libuv's build applies Debian's patches, the chart
# needs matplotlib.
bash cmake/deps.sh g++-mingw-w64-x86-64 libasio-dev patch python3-matplotlib || exit 1

bash bench/libuv-mingw.sh "$UV"

mkdir -p "$OUT"
# Rebuild a program only when one of its inputs is newer than it.
stale() { local out=$1; shift; [ ! -e "$out" ] && return 0; for f; do [ "$f" -nt "$out" ] && return 0; done; return 1; }

# wsx-echo, Release, no Criterion tests, warnings not fatal. By default from the last commit
# (git archive HEAD): a measurement names what it measured, and work in progress in the tree cannot
# break it. BENCH_WSX=tree builds the working tree as it is instead.
if [ "${BENCH_WSX:-head}" = tree ] || ! git rev-parse --verify -q HEAD >/dev/null 2>&1; then
    src=. bld=$OUT/wsx-tree rev="$(git rev-parse --short HEAD 2>/dev/null || echo '?')+tree"
else
    src=$OUT/wsx-src bld=$OUT/wsx-head rev=$(git rev-parse --short HEAD)
    if [ "$(cat "$src/.rev" 2>/dev/null)" != "$rev" ]; then
        rm -rf "$src" && mkdir -p "$src"
        git archive HEAD CMakeLists.txt cmake include src server | tar -x -C "$src"
        echo "$rev" >"$src/.rev"
    fi
fi
if [ ! -f "$bld/build.ninja" ]; then
    cmake -S "$src" -B "$bld" -G Ninja -DCMAKE_TOOLCHAIN_FILE="$PWD/cmake/mingw-w64.cmake" \
        -DCMAKE_BUILD_TYPE=Release -DWSX_BUILD_TESTS=OFF -DWSX_WERROR=OFF >"$OUT/wsx-configure.log" 2>&1 ||
        { cat "$OUT/wsx-configure.log"; echo "wsx bench: cmake configure of wsx ($rev) failed" >&2; exit 1; }
fi
cmake --build "$bld" --target wsx-echo >"$OUT/wsx-build.log" 2>&1 ||
    { tail -40 "$OUT/wsx-build.log"; echo "wsx bench: building wsx-echo ($rev) failed" >&2; exit 1; }
cp "$bld/server/wsx-echo.exe" "$OUT/wsx-echo.exe"
echo "$rev" >"$OUT/wsx-echo.rev"
echo "wsx bench: wsx-echo.exe from $rev"

if stale "$OUT/asio-echo.exe" bench/peers/asio_echo.cpp; then
    echo "wsx bench: building asio-echo.exe (Asio $(sed -n 's/^#define ASIO_VERSION \([0-9]*\).*/\1/p' /usr/include/asio/version.hpp))"
    # Debian's Asio lives in /usr/include, which the cross compiler must not search whole.
    mkdir -p "$OUT/asio-include"
    ln -sfn /usr/include/asio.hpp "$OUT/asio-include/asio.hpp"
    ln -sfn /usr/include/asio "$OUT/asio-include/asio"
    $HOST-g++-posix -std=c++17 -O2 -Wall -Wextra -D_WIN32_WINNT=0x0601 -DASIO_STANDALONE \
        -isystem "$OUT/asio-include" bench/peers/asio_echo.cpp -o "$OUT/asio-echo.exe" -static -lws2_32 -lmswsock
fi
if stale "$OUT/uv-echo.exe" bench/peers/uv_echo.c "$UV/lib/libuv.a"; then
    echo "wsx bench: building uv-echo.exe (libuv $(cat "$UV/VERSION"))"
    $HOST-gcc -std=c11 -O2 -Wall -Wextra -I"$UV/include" bench/peers/uv_echo.c -o "$OUT/uv-echo.exe" \
        -static "$UV/lib/libuv.a" -lpsapi -luser32 -ladvapi32 -liphlpapi -luserenv -lws2_32 \
        -ldbghelp -lole32 -lshell32
fi
if stale "$OUT/epoll-echo" bench/peers/epoll_echo.c; then
    gcc -std=c11 -O2 -Wall -Wextra -pthread bench/peers/epoll_echo.c -o "$OUT/epoll-echo"
fi
if stale "$OUT/load" bench/load/load.c; then
    gcc -std=c11 -O2 -Wall -Wextra bench/load/load.c -o "$OUT/load"
fi

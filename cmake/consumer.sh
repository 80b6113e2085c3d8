#!/usr/bin/env bash
# `make consumer`: install wsx from BUILD into BUILD/stage, then build tests/consumer out of tree
# against the INSTALLED package, once with find_package(wsx) and once with pkg-config, each
# linking the static library and the DLL, and run every client under Wine against a wsx-echo
# started on 127.0.0.1 port 0 (and the docs' example server against one client).
#   cmake/consumer.sh BUILD_DIR
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build=$(readlink -m "${1:-build}")
stage=$build/stage
toolchain=$root/cmake/mingw-w64.cmake
wine_run=$root/cmake/wine-run
t0=$(date +%s)
results=()
fail=0
pass() { results+=("PASS  $1"); echo "consumer: PASS $1"; }
failed() { results+=("FAIL  $1"); echo "consumer: FAIL $1" >&2; fail=1; }
die() { echo "consumer: $*" >&2; exit 1; }
dos() { echo "Z:$(readlink -m "$1" | tr / '\\')"; }

# 1. Install (a fresh stage: nothing left over from an older install).
rm -rf "$stage"
cmake --install "$build" --prefix "$stage" >"$build/consumer-install.log" 2>&1 ||
    { cat "$build/consumer-install.log"; die "cmake --install failed"; }
for f in include/wsx/wsx.h lib/libwsx.a lib/libwsx.dll.a bin/libwsx.dll lib/cmake/wsx/wsxConfig.cmake \
    lib/cmake/wsx/wsxConfigVersion.cmake lib/pkgconfig/wsx.pc lib/pkgconfig/wsx-static.pc; do
    [ -f "$stage/$f" ] || die "not installed: $f"
done
pass "install: headers, libwsx.a, libwsx.dll + libwsx.dll.a, wsxConfig.cmake, wsx.pc, wsx-static.pc in $stage"

# 2. Configure and build the consumer both ways, out of tree, with the same toolchain file.
# find_package: wsx_DIR names the package (the toolchain confines CMAKE_PREFIX_PATH searches to
# the mingw sysroot). pkg-config: PKG_CONFIG_LIBDIR = the stage only, no host .pc files.
for via in cmake pkg-config; do
    bdir=$build/consumer-$via
    rm -rf "$bdir"
    if PKG_CONFIG_LIBDIR=$stage/lib/pkgconfig PKG_CONFIG_PATH= \
        cmake -S tests/consumer -B "$bdir" -G Ninja -DCMAKE_TOOLCHAIN_FILE="$toolchain" \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWSX_CONSUMER_VIA=$via -Dwsx_DIR="$stage/lib/cmake/wsx" \
        >"$bdir.log" 2>&1 && cmake --build "$bdir" >>"$bdir.log" 2>&1; then
        pass "build via $via: client-static, client-dll, server-static, server-dll"
    else
        cat "$bdir.log"
        failed "build via $via (log: $bdir.log)"
    fi
done
# The DLL-linked clients must really import libwsx.dll; the static ones must not.
for via in cmake pkg-config; do
    for exe in "$build/consumer-$via"/client-*.exe; do
        [ -f "$exe" ] || continue
        imports=$(x86_64-w64-mingw32-objdump -p "$exe" | grep -c 'DLL Name: libwsx.dll')
        case "$exe:$imports" in
        *-dll.exe:1 | *-static.exe:0) ;;
        *) failed "$via $(basename "$exe") imports libwsx.dll $imports time(s)" ;;
        esac
    done
done

# 3. Check the examples in docs/api.md are the files that were just compiled.
for f in client.c server.c; do
    awk -v f="$f" '$0 == "<!-- tests/consumer/" f " -->" {want = 1; next}
                   want && /^```c$/ {on = 1; next} on && /^```$/ {exit} on {print}' docs/api.md \
        >"$build/api-$f"
    if [ -s "$build/api-$f" ] && cmp -s "$build/api-$f" "tests/consumer/$f"; then
        pass "docs/api.md example = tests/consumer/$f (compiled above)"
    else
        failed "docs/api.md example differs from tests/consumer/$f (diff $build/api-$f tests/consumer/$f)"
    fi
done

# 4. Run: a server on 127.0.0.1 port 0, its "listening on HOST:PORT" line, the clients, SIGINT.
"$wine_run" --start-server
server_pid=
start_server() { # EXE LOG [ARGS...]: sets server_pid and server_addr
    local exe=$1 log=$2
    shift 2
    "$wine_run" "$exe" "$@" >"$log" 2>&1 &
    server_pid=$!
    server_addr=
    for _ in $(seq 200); do
        server_addr=$(sed -n 's/^listening on \([0-9.]*:[0-9]*\).*/\1/p' "$log" | head -1)
        [ -n "$server_addr" ] && return 0
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    return 1
}
stop_server() { # sends SIGINT to our own server by PID; waits (SIGKILL after 20 s); returns its status
    local pid=$1 rc
    kill -INT "$pid" 2>/dev/null
    for _ in $(seq 200); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    wait "$pid"
    rc=$?
    return $rc
}
trap '[ -n "$server_pid" ] && kill -KILL "$server_pid" 2>/dev/null' EXIT

echo_exe=$build/server/wsx-echo.exe
[ -f "$echo_exe" ] || die "$echo_exe not built"
if start_server "$echo_exe" "$build/consumer-wsx-echo.log" --listen 127.0.0.1:0; then
    echo "consumer: wsx-echo (pid $server_pid) listening on $server_addr"
    for via in cmake pkg-config; do
        for link in static dll; do
            exe=$build/consumer-$via/client-$link.exe
            [ -f "$exe" ] || { failed "client-$link via $via: not built"; continue; }
            for bytes in 1 100000 1048576 8388608; do  # 8 MiB: more than a connect carries
                # find_package copied libwsx.dll beside the exe; the pkg-config build finds it on
                # WINEPATH (the stage's bin/), as a program would find an installed DLL on PATH.
                if [ $via = pkg-config ]; then wp="$(dos "$stage/bin")"; else wp=; fi
                out=$(WINEPATH=$wp "$wine_run" "$exe" "$server_addr" $bytes 2>&1)
                rc=$?
                if [ $rc != 0 ] && [ -z "$out" ]; then
                    # Seen once in ~30 runs: exit 1 with no output at all, before the client printed
                    # anything (a start-up failure under Wine, not an echo result). Shown, then
                    # retried once; a second failure fails the run.
                    echo "consumer: client-$link via $via, $bytes bytes: exit $rc with no output; retrying once"
                    out=$(WINEPATH=$wp "$wine_run" "$exe" "$server_addr" $bytes 2>&1)
                    rc=$?
                fi
                if [ $rc = 0 ] && grep -q "echo OK" <<<"$out"; then
                    pass "client-$link via $via: $bytes bytes sent (up to 64 KiB of them with ConnectEx), echoed byte for byte"
                else
                    echo "$out"
                    failed "client-$link via $via, $bytes bytes (exit $rc)"
                fi
            done
        done
    done
    stop_server "$server_pid"
    rc=$?
    server_pid=
    if [ $rc = 0 ] && grep -q '^final:' "$build/consumer-wsx-echo.log"; then
        pass "wsx-echo stopped by SIGINT, exit 0: $(grep '^final:' "$build/consumer-wsx-echo.log" | cut -c1-60)..."
    else
        cat "$build/consumer-wsx-echo.log"
        failed "wsx-echo stop (exit $rc)"
    fi
else
    cat "$build/consumer-wsx-echo.log"
    failed "wsx-echo did not print its listening line"
fi

# The docs' example server (DLL build, found through find_package) against the static client.
if [ -f "$build/consumer-cmake/server-dll.exe" ] &&
    start_server "$build/consumer-cmake/server-dll.exe" "$build/consumer-server.log" 127.0.0.1:0; then
    out=$("$wine_run" "$build/consumer-pkg-config/client-static.exe" "$server_addr" 100000 2>&1)
    rc=$?
    stop_server "$server_pid"
    server_pid=
    if [ $rc = 0 ] && grep -q "echo OK" <<<"$out"; then
        pass "docs example server (server-dll via cmake) echoes for client-static via pkg-config"
    else
        echo "$out"
        failed "docs example server with client-static (exit $rc)"
    fi
else
    failed "docs example server did not start"
fi

echo
echo "consumer: summary ($(($(date +%s) - t0)) s)"
printf '  %s\n' "${results[@]}"
[ $fail = 0 ] && echo "consumer: ALL PASSED" || echo "consumer: FAILED"
exit $fail

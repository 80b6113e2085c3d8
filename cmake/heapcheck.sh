#!/usr/bin/env bash
# Run every Criterion suite once more with Wine's heap checks on (WINEDEBUG=warn+heap) and fail on
# any heap warning: a double free or a write past a block that the normal run would not notice.
#   cmake/heapcheck.sh BUILD_DIR
set -uo pipefail
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
fail=0
for exe in "$build"/tests/test_*.exe; do
    log=$(mktemp)
    WINEDEBUG=warn+heap "$here/wine-run" "$exe" --jobs 2 >"$log" 2>&1
    rc=$?
    warnings=$(grep -c 'warn:heap' "$log")
    echo "heapcheck: $(basename "$exe"): exit $rc, heap warnings $warnings"
    if [ "$rc" != 0 ] || [ "$warnings" != 0 ]; then
        grep 'warn:heap' "$log" | head -20
        [ "$rc" != 0 ] && tail -20 "$log"
        fail=1
    fi
    rm -f "$log"
done
exit $fail

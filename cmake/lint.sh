#!/usr/bin/env bash
# Static checks, zero findings allowed: clang's analyzer for the mingw target, cppcheck with the
# Windows platform, clang-format. Run by `make lint` (part of `make test`).
set -uo pipefail
cd "$(dirname "$0")/.."
fail=0
sources=$(ls src/*.c server/*.c)
for f in $sources; do
    out=$(clang --target=x86_64-w64-mingw32 --analyze -Iinclude -Isrc "$f" -o /dev/null 2>&1)
    if [ -n "$out" ]; then
        echo "$out"
        fail=1
    fi
done
echo "lint: clang --analyze: $(echo $sources | wc -w) files"
# The one suppression: missingIncludeSystem. cppcheck is not given the mingw SDK headers
# (windows.h, winsock2.h): it checks our code, and with the SDK it takes minutes and reports
# inside Microsoft's headers.
out=$(cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability --std=c11 \
    --platform=win64 -D_WIN32 -D_WIN64 -D__MINGW32__ -Iinclude -Isrc \
    --suppress=missingIncludeSystem src server 2>&1) || fail=1
[ -n "$out" ] && { echo "$out"; fail=1; }
echo "lint: cppcheck"
# Public headers: each one on its own (self-contained), as ISO C11 and C++11 with -pedantic-errors,
# static and DLL: a GNU-only construct would not build with MSVC, which we cannot run here.
tmp=$(mktemp -d)
for h in include/wsx/*.h; do
    echo "#include \"${h#include/}\"" >"$tmp/h.c"
    cp "$tmp/h.c" "$tmp/h.cpp"
    for dll in "" -DWSX_DLL; do
        out=$( { clang --target=x86_64-w64-mingw32 -std=c11 -pedantic-errors -Wall -Wextra -Werror \
                     $dll -Iinclude -fsyntax-only "$tmp/h.c"
                 clang++ --target=x86_64-w64-mingw32 -std=c++11 -pedantic-errors -Wall -Wextra \
                     -Werror $dll -Iinclude -fsyntax-only "$tmp/h.cpp"; } 2>&1)
        [ -n "$out" ] && { echo "$h $dll: $out"; fail=1; }
    done
done
rm -rf "$tmp"
echo "lint: public headers alone, C11 and C++11, -pedantic-errors"
for f in src/*.c src/*.h include/wsx/*.h server/*.c tests/*.c tests/*.h; do
    clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || { echo "lint: not clang-formatted: $f"; fail=1; }
done
echo "lint: clang-format"
[ $fail = 0 ] && echo "lint: clean" || echo "lint: FINDINGS (see above)"
exit $fail

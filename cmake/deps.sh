#!/usr/bin/env bash
# Install what wsx needs from Debian's archive, only what is missing, then check
# that every tool answers. Called by `make deps` (and so by `make run` / `make test`).
#   cmake/deps.sh [PKG...]   build + run + test dependencies, plus PKG... (bench/setup.sh)
# Exit 1 with one clear line when something cannot be installed.
set -euo pipefail

PKGS=(
    make cmake ninja-build pkg-config        # build
    gcc-mingw-w64-x86-64 libz-mingw-w64-dev  # cross compiler; zlib for Criterion's libgit2
    wine wine64                              # runs the .exe files
    gcc libc6-dev meson tar xz-utils         # Criterion's cross build (cmake/criterion-mingw.sh)
    python3 python3-pytest python3-hypothesis python3-pytest-timeout
    clang clang-format cppcheck              # make lint
    "$@"
)

missing=()
for p in "${PKGS[@]}"; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [ "$st" = "install ok installed" ] || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
    echo "wsx: installing missing Debian packages: ${missing[*]}"
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
            SUDO=sudo
        else
            echo "wsx: missing packages and not root: run as root, or: apt-get install ${missing[*]}" >&2
            exit 1
        fi
    else
        SUDO=
    fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq || { echo "wsx: apt-get update failed (network or sources?)" >&2; exit 1; }
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || { echo "wsx: apt-get install ${missing[*]} failed" >&2; exit 1; }
fi

for t in x86_64-w64-mingw32-gcc cmake ninja wine wineserver meson pkg-config clang clang-format cppcheck; do
    command -v "$t" >/dev/null || { echo "wsx: tool '$t' not found after install" >&2; exit 1; }
done
/usr/bin/python3 -c 'import pytest, hypothesis, pytest_timeout' 2>/dev/null \
    || { echo "wsx: /usr/bin/python3 cannot import pytest, hypothesis and pytest_timeout" >&2; exit 1; }

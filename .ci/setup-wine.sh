#!/usr/bin/env bash
# Installs Wine 8 and MinGW (Debian packages) and prepares a throw-away Wine prefix in which the
# cross-compiled patchwatch.exe runs, for the Windows tests (patchwatch/tests/it/wine.rs).
#
# Usage: eval "$(bash .ci/setup-wine.sh)"
# stdout carries only `export VAR=value` lines; everything else goes to stderr.
# Idempotent: a second run reuses the packages, the shim and a prefix that is already set up.
#
# Wine 8 has no bcryptprimitives.dll, whose ProcessPrng Rust's standard library imports (a Rust
# .exe exits at once with status 53 without it): a shim built here from
# deploy/windows/shim/ (ProcessPrng over RtlGenRandom) goes into the prefix's system32.
# The tests copy the prefix, so each has its own C: drive, wineserver and services.
#
# The exe itself is built by .ci/run (profile `wine`); PATCHWATCH_EXE names where it lands.
set -euo pipefail
exec 3>&1 1>&2
cd "$(dirname "$0")/.."

PREFIX=${PATCHWATCH_WINEPREFIX:-/tmp/patchwatch-wine/prefix}
SHIM_DIR=$(dirname "$PREFIX")/shim
TARGET=x86_64-pc-windows-gnu

# Debian's 64-bit loader; there is no `wine64` on PATH and the `wine` wrapper wants wine32.
WINE=/usr/lib/wine/wine64
if [ ! -x "$WINE" ] || ! command -v x86_64-w64-mingw32-gcc >/dev/null || ! command -v wixl >/dev/null; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends \
    wine wine64 gcc-mingw-w64-x86-64 wixl
fi
rustup target add "$TARGET"

mkdir -p "$SHIM_DIR"
SRC=deploy/windows/shim
if [ ! -s "$SHIM_DIR/bcryptprimitives.dll" ] \
  || [ "$SRC/bcryptprimitives.c" -nt "$SHIM_DIR/bcryptprimitives.dll" ]; then
  x86_64-w64-mingw32-gcc -O2 -shared -o "$SHIM_DIR/bcryptprimitives.dll" \
    "$SRC/bcryptprimitives.c" "$SRC/bcryptprimitives.def" -ladvapi32
fi

export WINEPREFIX=$PREFIX WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
if [ ! -f "$PREFIX/.patchwatch-ready" ]; then
  rm -rf "$PREFIX"
  mkdir -p "$PREFIX"
  # First call creates the prefix (~10 s); no Mono or Gecko prompts in CI.
  "$WINE" wineboot --init
  /usr/lib/wine/wineserver -w
  touch "$PREFIX/.patchwatch-ready"
fi
cp "$SHIM_DIR/bcryptprimitives.dll" "$PREFIX/drive_c/windows/system32/bcryptprimitives.dll"

echo "export PATCHWATCH_WINE=$WINE" >&3
echo "export WINEPREFIX=$PREFIX" >&3
echo "export PATCHWATCH_EXE=$PWD/target/$TARGET/wine/patchwatch.exe" >&3

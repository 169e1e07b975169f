#!/usr/bin/env bash
# Builds the shipped artifacts into target/dist/: patchwatch.exe (x86_64-pc-windows-gnu), the
# Linux binary, patchwatch-<version>-x64.msi (wixl, from deploy/windows/patchwatch.wxs) and
# SHA256SUMS. Needs MinGW and wixl: `apt-get install gcc-mingw-w64-x86-64 wixl`
# (.ci/setup-wine.sh installs both) and `rustup target add x86_64-pc-windows-gnu`.
#
# Usage: bash deploy/build-release.sh [--profile dist|release|wine]   (default dist: fat LTO)
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE=dist
if [ "${1:-}" = "--profile" ]; then PROFILE=${2:?--profile needs a name}; fi
TARGET=x86_64-pc-windows-gnu
VERSION=$(cargo metadata --no-deps --format-version 1 \
  | python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"]=="patchwatch"))')
OUT=target/dist
mkdir -p "$OUT"

cargo build --locked --profile "$PROFILE" --target "$TARGET" -p patchwatch
cargo build --locked --profile "$PROFILE" -p patchwatch
cp "target/$TARGET/$PROFILE/patchwatch.exe" "$OUT/patchwatch.exe"
cp "target/$PROFILE/patchwatch" "$OUT/patchwatch-linux-x86_64"

# MSI versions are major.minor.build with build < 65536: 0.1.0 stays 0.1.0.
# wixl resolves File/@Source against the working directory and refuses absolute paths.
(cd "$OUT" && wixl -a x64 -D "Version=$VERSION" -D "Exe=patchwatch.exe" \
  -o "patchwatch-$VERSION-x64.msi" ../../deploy/windows/patchwatch.wxs)

(cd "$OUT" && sha256sum patchwatch.exe patchwatch-linux-x86_64 "patchwatch-$VERSION-x64.msi" > SHA256SUMS)
cat "$OUT/SHA256SUMS"

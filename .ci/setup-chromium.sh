#!/usr/bin/env bash
# Installs Debian's Chromium and ChromeDriver (if missing) for the dashboard browser test.
#
# Everything it says goes to stderr except the `export` lines for the tests:
#     eval "$(bash .ci/setup-chromium.sh)"
#     export PATCHWATCH_CHROMEDRIVER=/usr/bin/chromedriver
#     export PATCHWATCH_CHROMIUM=/usr/bin/chromium
#
# The test itself starts chromedriver on a loopback port and passes Chromium the flags this
# offline machine needs (--headless --no-sandbox --disable-background-networking ...).
set -euo pipefail
log() { printf 'setup-chromium: %s\n' "$*" >&2; }

if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  log "installing chromium and chromium-driver from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >&2
fi
log "$(/usr/bin/chromium --version 2>/dev/null || echo 'chromium: version unknown')"
log "$(/usr/bin/chromedriver --version 2>/dev/null || echo 'chromedriver: version unknown')"
echo "export PATCHWATCH_CHROMEDRIVER=/usr/bin/chromedriver"
echo "export PATCHWATCH_CHROMIUM=/usr/bin/chromium"

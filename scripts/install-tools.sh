#!/usr/bin/env bash
# Installs the real external tools the integration tests use, idempotently:
#   prometheus + promtool from Debian's packages (needs root, as on CI and dev machines).
# Tests that need a tool which could not be installed skip with the reason; CI installs them.
set -uo pipefail
cd "$(dirname "$0")/.."

if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "installing prometheus (Debian package)"
    apt-get update -qq >/dev/null && \
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null \
      || echo "warning: could not install prometheus; its tests will skip" >&2
  else
    echo "warning: prometheus missing and not root; its tests will skip" >&2
  fi
fi
exit 0

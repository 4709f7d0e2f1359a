#!/usr/bin/env bash
# Headless Chromium and its driver from Debian's packages, for the dashboard's browser tests (Playwright
# launches /usr/bin/chromium; it never downloads a browser). Idempotent: quick when already installed.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    echo "chromium.sh: $(/usr/bin/chromium --version 2>/dev/null || echo chromium) already installed"
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
# another apt run (a parallel services script) may hold the lock for a while: wait for it
for _ in $(seq 1 60); do
    if $SUDO apt-get install -y -q chromium chromium-driver; then
        break
    fi
    echo "chromium.sh: apt-get failed (lock held?), retrying in 5 s" >&2
    sleep 5
    $SUDO apt-get update -q || true
done
/usr/bin/chromium --version

#!/usr/bin/env bash
# Installs Debian's chromium for the browser test when it is missing (needs root or sudo).
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || [ -n "${AIVJ_CHROMIUM:-}" ]; then
  exit 0
fi
echo "installing chromium for the browser test (apt-get)..." >&2
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
$SUDO apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium >/dev/null
command -v chromium >/dev/null

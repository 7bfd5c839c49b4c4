#!/usr/bin/env bash
# The approval page in a real browser: installs Debian's Chromium (when missing) and the pinned
# playwright-core, then runs approval.mjs against `portcullis demo`.
# Usage: tests/browser/run.sh [TARGET_DIR]   (binaries must be built; default target/debug)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=$(cd "${1:-$root/target/debug}" && pwd)
cd "$here"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
browser=$(command -v chromium || true)
if [ -z "$browser" ]; then
  echo "installing Debian's chromium"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium >/dev/null
  browser=$(command -v chromium)
fi
"$browser" --version
if [ ! -d node_modules/playwright-core ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
timeout 300 node approval.mjs "$bin/portcullis" "$browser"

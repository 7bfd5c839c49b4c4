#!/usr/bin/env bash
# The approval page in a real browser: installs Debian's Chromium (when missing) and the pinned
# playwright-core, then runs approval.mjs against `portcullis demo`.
# Usage: tests/browser/run.sh [TARGET_DIR]   (binaries must be built; default target/debug)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=$(cd "${1:-$root/target/debug}" && pwd)
cd "$here"

browser=$("$here/chromium.sh")
if [ ! -d node_modules/playwright-core ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
timeout 300 node approval.mjs "$bin/portcullis" "$browser"

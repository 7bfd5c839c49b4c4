#!/usr/bin/env bash
# Interop with real third-party peers, pinned in package.json. Usage: tests/interop/run.sh [TARGET_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${1:-$root/target/debug}
cd "$here"
if [ ! -x node_modules/.bin/node ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund >/dev/null
fi
node_modules/.bin/node oidc-provider.mjs "$bin/portcullis" "$bin/portcullis-fixture"

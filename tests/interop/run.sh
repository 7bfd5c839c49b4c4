#!/usr/bin/env bash
# Interop with real third-party peers, pinned in package.json and requirements.txt.
# Usage: tests/interop/run.sh [TARGET_DIR]
#   1. oidc-provider as the authorization server in front of `portcullis serve`;
#      then with a token-exchange grant, for an upstream (the TypeScript SDK's server) that
#      takes only tokens for its own audience (`credentials = "token-exchange"`);
#   2. per-user upstream sign-in (`credentials = "user-oauth"`): two oidc-provider servers, the
#      TypeScript SDK's server as the upstream, the TypeScript and Python SDK clients seeing the
#      URL-mode elicitation, and Debian's Chromium (playwright-core) signing a person in;
#   3. the official TypeScript and Python MCP SDK clients through the whole OAuth flow against
#      `portcullis demo` (its embedded authorization server), on their own.
# Each step prints `NAME interop: N passed, N failed` (.ci/run adds those up); any failure makes
# this script exit non-zero, after every step has run.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=$(cd "${1:-$root/target/debug}" && pwd)
cd "$here"
if [ ! -x node_modules/.bin/node ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund >/dev/null
fi
status=0

work=$(mktemp -d)
data=$(mktemp -d)
demo_pid=
cleanup() {
  if [ -n "$demo_pid" ]; then
    kill "$demo_pid" 2>/dev/null || true
    wait "$demo_pid" 2>/dev/null || true
  fi
  rm -rf "$work" "$data"
}
trap cleanup EXIT

# A step that could not run, or died before its summary line, still counts: as one failed check.
not_run() { printf 'FAIL %s\n%s interop: 0 passed, 1 failed\n' "$2" "$1"; }

# run_step NAME COMMAND...: runs one step; returns non-zero if it failed.
run_step() {
  local name=$1
  shift
  local rc=0
  timeout 300 "$@" | tee "$work/$name.txt" || rc=$?
  if ! grep -Eq 'interop: [0-9]+ passed, [0-9]+ failed$' "$work/$name.txt"; then
    not_run "$name" "$name exited with status $rc before its summary"
    [ "$rc" -ne 0 ] || rc=1
  fi
  return "$rc"
}

run_step oidc-provider node_modules/.bin/node oidc-provider.mjs "$bin/portcullis" "$bin/portcullis-fixture" || status=1
run_step token-exchange node_modules/.bin/node token-exchange.mjs "$bin/portcullis" || status=1

python_ready=1
if [ ! -x .venv/bin/python ] || [ ! -f .venv/.installed ] || [ requirements.txt -nt .venv/.installed ]; then
  if python3 -m venv .venv && .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt; then
    touch .venv/.installed
  else
    python_ready=0
  fi
fi

browser=$("$root/tests/browser/chromium.sh") || browser=
if [ "$python_ready" = 1 ] && [ -n "$browser" ]; then
  run_step user-oauth node_modules/.bin/node user-oauth.mjs "$bin/portcullis" "$browser" .venv/bin/python || status=1
else
  not_run user-oauth "no Python venv from requirements.txt, or no Chromium"
  status=1
fi

"$bin/portcullis" demo --port 0 --data-dir "$data" >"$work/demo.out" 2>"$work/demo.err" &
demo_pid=$!
url=
for _ in $(seq 600); do # up to 60 s
  url=$(sed -nE 's/.*MCP endpoint:[[:space:]]+([^[:space:]]+).*/\1/p' "$work/demo.out" | head -n 1)
  if [ -n "$url" ] || ! kill -0 "$demo_pid" 2>/dev/null; then break; fi
  sleep 0.1
done

demo_status=0
if [ -z "$url" ]; then
  echo "portcullis demo printed no 'MCP endpoint:' line; its output:"
  cat "$work/demo.out" "$work/demo.err"
  not_run typescript-sdk "portcullis demo did not start"
  not_run python-sdk "portcullis demo did not start"
  demo_status=1
else
  echo "portcullis demo at $url"
  run_step typescript-sdk node_modules/.bin/node sdk-typescript.mjs "$url" "$bin/portcullis" "$data" || demo_status=1
  if [ "$python_ready" = 1 ]; then
    run_step python-sdk .venv/bin/python sdk_python.py "$url" "$bin/portcullis" "$data" || demo_status=1
  else
    not_run python-sdk "could not set up the Python venv from requirements.txt"
    demo_status=1
  fi
  if [ "$demo_status" -ne 0 ]; then
    echo "--- portcullis demo stderr ---"
    cat "$work/demo.err"
  fi
fi
[ "$demo_status" -eq 0 ] || status=1
exit "$status"

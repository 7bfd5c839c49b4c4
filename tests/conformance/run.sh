#!/usr/bin/env bash
# Run the official MCP conformance suite THROUGH the gateway, with authentication on:
#   suite -> token-injecting proxy -> portcullis serve -> portcullis-fixture (stdio, then HTTP)
# for @modelcontextprotocol/conformance 0.1.16 (--suite all) and 0.2.0-alpha.12
# (--requirements 2025-11-25 and 2026-07-28), each against a strict expected-failures file.
# Usage: tests/conformance/run.sh [TARGET_DIR]   (binaries must be built; default target/debug)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=$(cd "${1:-$root/target/debug}" && pwd)
work=$(mktemp -d)
# `start` runs in a command substitution (a subshell), so it records pids in a file.
pidfile="$work/pids"
: >"$pidfile"
stop_all() {
  while read -r pid; do kill "$pid" 2>/dev/null || true; done <"$pidfile"
  while read -r pid; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  done <"$pidfile"
  : >"$pidfile"
}
cleanup() {
  stop_all
  rm -rf "$work"
}
trap cleanup EXIT

cd "$here"
if [ ! -x node_modules/.bin/node ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund >/dev/null
fi
node=$here/node_modules/.bin/node
"$node" --version | grep -q '^v22\.' || { echo "conformance: node 22 expected, got $("$node" --version)"; exit 1; }

# Start a program in the background and wait for the stdout line that starts with WORD; echo the
# rest of that line. Usage: start LOG WORD PROGRAM ARGS...
start() {
  local log=$1 word=$2; shift 2
  "$@" >"$log.out" 2>"$log.err" &
  echo $! >>"$pidfile"
  for _ in $(seq 1 200); do
    if grep -q "^$word " "$log.out" 2>/dev/null; then
      sed -n "s/^$word //p" "$log.out" | head -n1
      return 0
    fi
    sleep 0.05
  done
  echo "conformance: $* did not start; its stderr:" >&2
  cat "$log.err" >&2
  return 1
}

status=0
summary=()

# run LABEL PACKAGE EXPECTED-FAILURES ARGS...
run_suite() {
  local label=$1 package=$2 expected=$3; shift 3
  local log="$work/$label.log"
  echo "::: $label"
  if "$node" "node_modules/$package/dist/index.js" server "$@" --expected-failures "$here/$expected" >"$log" 2>&1; then
    verdict=ok
  else
    verdict=FAILED
    status=1
  fi
  # The suite's own summary: per-scenario lines, totals, and the baseline verdict.
  sed -n '/=== SUMMARY ===/,$p' "$log" | sed 's/\x1b\[[0-9;]*m//g'
  local total
  total=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '^Total: ' | tail -n1 || true)
  summary+=("$label: ${total:-no total printed} [$verdict]")
  if [ "$verdict" = FAILED ] && ! grep -q '=== SUMMARY ===' "$log"; then
    tail -n 40 "$log"
  fi
}

# Authentication stays on: the suite sends no token, so a loopback proxy adds one, minted by a
# throwaway test issuer for the gateway's resource identifier.
resource="http://127.0.0.1/mcp"

for transport in stdio http; do
  issuer=$(start "$work/issuer-$transport" issuer "$bin/conformance-proxy" issuer --resource "$resource")
  token=$(sed -n 's/^token //p' "$work/issuer-$transport.out" | head -n1)
  if [ "$transport" = stdio ]; then
    upstream="command = \"$bin/portcullis-fixture\"
args = [\"--stdio\"]"
  else
    fixture_url=$(start "$work/fixture" listening "$bin/portcullis-fixture" --http 127.0.0.1:0)
    upstream="url = \"$fixture_url\""
  fi
  cat >"$work/gateway-$transport.toml" <<TOML
[server]
listen = "127.0.0.1:0"

[[upstream]]
name = "fixture"
$upstream

[auth]
public_url = "$resource"
scopes = ["mcp"]

[[auth.issuer]]
issuer = "$issuer"
jwks_uri = "$issuer/jwks"

# The suite checks the protocol, not policy: every authenticated caller may do everything,
# every method included (an unconstrained action covers the rpc:<method> actions too).
[policy]
cedar = "permit (principal, action, resource);"
TOML
  gateway=$(start "$work/gateway-$transport" listening "$bin/portcullis" serve --config "$work/gateway-$transport.toml")
  url=$(start "$work/proxy-$transport" listening "$bin/conformance-proxy" forward --gateway "$gateway" --token "$token")
  echo "conformance: suite -> token-injecting proxy $url -> gateway $gateway (auth on) -> fixture over $transport"
  run_suite "0.1.16 all via $transport" conformance-0.1.16 expected-failures-0.1.16.yaml \
    --url "$url" --suite all
  run_suite "alpha.12 2025-11-25 via $transport" conformance-0.2.0-alpha.12 expected-failures-2025-11-25.yaml \
    --url "$url" --requirements 2025-11-25
  run_suite "alpha.12 2026-07-28 via $transport" conformance-0.2.0-alpha.12 expected-failures-2026-07-28.yaml \
    --url "$url" --requirements 2026-07-28
  stop_all
done

echo
echo "=== conformance through the gateway ==="
printf '%s\n' "${summary[@]}"
exit $status

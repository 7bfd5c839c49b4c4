#!/usr/bin/env bash
# Transparency: MCP servers we did not write, driven by the official SDK clients once directly and
# once through `portcullis serve` (authentication on, a permit-all policy), and the two transcripts
# compared field by field (compare.py; intended differences in allow-list.json).
#   upstreams:  server-everything over stdio and streamable HTTP; server-filesystem over stdio (it
#               has no HTTP mode)
#   clients:    TypeScript SDK (2025-11-25), Python SDK in 2025-11-25 and in 2026-07-28
# Usage: tests/transparency/run.sh [TARGET_DIR]   (binaries must be built; default target/debug)
# TRANSPARENCY_KEEP=DIR keeps the transcripts there.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=$(cd "${1:-$root/target/debug}" && pwd)
work=$(mktemp -d)
pidfile="$work/pids"
: >"$pidfile"
stop_all() {
  while read -r pid; do kill "$pid" 2>/dev/null || true; done <"$pidfile"
  while read -r pid; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$pid" 2>/dev/null || true
  done <"$pidfile"
  : >"$pidfile"
}
cleanup() {
  stop_all
  if [ -n "${TRANSPARENCY_KEEP:-}" ]; then mkdir -p "$TRANSPARENCY_KEEP" && cp "$work"/*.json "$TRANSPARENCY_KEEP"/ 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# Whatever stops the suite before it ran still ends with the summary line, as one failure.
give_up() {
  echo "FAIL $1"
  echo "transparency interop: 0 passed, 1 failed"
  exit 1
}

cd "$here"
if [ ! -x node_modules/.bin/node ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund >/dev/null || give_up "npm ci"
fi
if [ ! -x .venv/bin/python ] || [ ! -f .venv/.installed ] || [ requirements.txt -nt .venv/.installed ]; then
  { python3 -m venv .venv && .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt; } ||
    give_up "could not set up the Python venv from requirements.txt"
  touch .venv/.installed
fi
node=$here/node_modules/.bin/node
python=$here/.venv/bin/python
"$node" --version | grep -q '^v22\.' || give_up "node 22 expected, got $("$node" --version)"
everything=$here/node_modules/@modelcontextprotocol/server-everything/dist/index.js
filesystem=$here/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js
export PORTCULLIS_LOG=${PORTCULLIS_LOG:-warn}

# Start a program in the background, wait until FILE has a line matching PATTERN, echo that line.
# Usage: start FILE PATTERN PROGRAM ARGS...   (stdout and stderr both go to FILE)
start() {
  local file=$1 pattern=$2; shift 2
  "$@" >"$file" 2>&1 &
  echo $! >>"$pidfile"
  echo $! >"$file.pid"
  for _ in $(seq 1 300); do
    if grep -Eq "$pattern" "$file" 2>/dev/null; then grep -Em1 "$pattern" "$file"; return 0; fi
    sleep 0.05
  done
  echo "transparency: $* did not start:" >&2
  tail -n 20 "$file" >&2
  return 1
}

# server-filesystem's allowed directory, laid out afresh before every run (the runs write in it),
# always at the same path so both transcripts name the same files.
sandbox=$work/fs/sandbox
reset_sandbox() {
  rm -rf "$work/fs"
  mkdir -p "$sandbox/sub" "$work/fs/outside-dir"
  printf 'first line\nsecond line\nthird line\n' >"$sandbox/notes.txt"
  printf '{"answer": 42, "pi": 3.14159}\n' >"$sandbox/sub/data.json"
  printf 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==' | base64 -d >"$sandbox/pixel.png"
  echo 'secret outside the sandbox' >"$work/fs/outside.txt"
  echo 'also outside' >"$work/fs/outside-dir/hidden.txt"
  ln -s ../outside.txt "$sandbox/escape"
  ln -s ../outside-dir "$sandbox/escape-dir"
}
reset_sandbox

issuer_line=$(start "$work/issuer.log" '^issuer ' "$bin/conformance-proxy" issuer --resource http://127.0.0.1/mcp) ||
  give_up "the test issuer did not start"
issuer=${issuer_line#issuer }
token=$(sed -n 's/^token //p' "$work/issuer.log" | head -n1)
free_port() { "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

passed=0
failed=0
# drive CLIENT SEQUENCE OUT TARGET...: one client run, at most 300 s.
drive() {
  local client=$1 sequence=$here/sequences/$2.json out=$3; shift 3
  case $client in
    typescript) timeout 300 "$node" drive-typescript.mjs "$sequence" "$out" --sandbox "$sandbox" "$@" ;;
    python-2025) timeout 300 "$python" drive_python.py 2025-11-25 "$sequence" "$out" --sandbox "$sandbox" "$@" ;;
    python-2026) timeout 300 "$python" drive_python.py 2026-07-28 "$sequence" "$out" --sandbox "$sandbox" "$@" ;;
  esac
}

# combination LABEL SEQUENCE GATEWAY_URL DIRECT_TARGET...: every client, directly and through the gateway.
combination() {
  local label=$1 sequence=$2 url=$3; shift 3
  for client in typescript python-2025 python-2026; do
    local name="${label//\//-}-$client" rc=0
    reset_sandbox
    drive "$client" "$sequence" "$work/$name-direct.json" "$@" 2>"$work/$name-direct.err" || rc=$?
    reset_sandbox
    drive "$client" "$sequence" "$work/$name-gateway.json" --url "$url" --token "$token" 2>"$work/$name-gateway.err" || rc=$?
    if [ "$rc" -ne 0 ] || ! [ -s "$work/$name-direct.json" ] || ! [ -s "$work/$name-gateway.json" ]; then
      echo "FAIL $label $client: a client run did not finish (status $rc)"
      tail -n 5 "$work/$name-direct.err" "$work/$name-gateway.err"
      failed=$((failed + 1))
    elif "$python" compare.py "$work/$name-direct.json" "$work/$name-gateway.json" allow-list.json "$client" "$label" >"$work/$name.diff"; then
      echo "ok   $label $client ($(tail -n1 "$work/$name.diff" | sed 's/^ *//'))"
      grep '^  KNOWN' "$work/$name.diff" || true
      passed=$((passed + 1))
    else
      echo "FAIL $label $client"
      cat "$work/$name.diff"
      failed=$((failed + 1))
    fi
  done
}

# gateway NAME UPSTREAM_TOML: starts `portcullis serve` in front of one upstream; echoes its URL.
gateway() {
  cat >"$work/$1.toml" <<TOML
[server]
listen = "127.0.0.1:0"

[[upstream]]
name = "$1"
$2

[auth]
public_url = "http://127.0.0.1/mcp"
scopes = ["mcp"]

[[auth.issuer]]
issuer = "$issuer"
jwks_uri = "$issuer/jwks"

# Transparency is about the protocol, not policy: every authenticated caller may do everything,
# without being asked to approve (server-filesystem marks its writes destructiveHint, which would).
[policy]
cedar = '@approval("none") permit (principal, action, resource);'
TOML
  local line
  line=$(start "$work/$1.log" '^listening ' "$bin/portcullis" serve --config "$work/$1.toml") || return 1
  echo "${line#listening }"
}

run_upstream() {
  local label=$1 sequence=$2 upstream_toml=$3; shift 3
  local url
  if url=$(gateway "${label//\//-}" "$upstream_toml"); then
    combination "$label" "$sequence" "$url" "$@"
    # Done with this gateway (and the stdio children it started): SIGTERM, as on any shutdown.
    kill "$(cat "$work/${label//\//-}.log.pid")" 2>/dev/null || true
  else
    echo "FAIL $label: the gateway did not start"
    failed=$((failed + 3))
  fi
}

run_upstream everything/stdio everything "command = \"$node\"
args = [\"$everything\", \"stdio\"]" --stdio "$node" "$everything" stdio

port=$(free_port)
if PORT=$port start "$work/everything-http.log" 'listening on port' "$node" "$everything" streamableHttp >/dev/null; then
  run_upstream everything/http everything "url = \"http://127.0.0.1:$port/mcp\"" --url "http://127.0.0.1:$port/mcp" --token unused
else
  echo "FAIL everything/http: server-everything did not start"
  failed=$((failed + 3))
fi

run_upstream filesystem/stdio filesystem "command = \"$node\"
args = [\"$filesystem\", \"$sandbox\"]" --stdio "$node" "$filesystem" "$sandbox"

echo "transparency interop: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

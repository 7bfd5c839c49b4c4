#!/usr/bin/env bash
# Prints the path of Debian's Chromium, installing it first when it is missing (the browser
# tests drive it with playwright-core). Progress goes to stderr; only the path to stdout.
set -euo pipefail
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
browser=$(command -v chromium || true)
if [ -z "$browser" ]; then
  echo "installing Debian's chromium" >&2
  as_root apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium >/dev/null
  browser=$(command -v chromium)
fi
"$browser" --version >&2
echo "$browser"

#!/usr/bin/env bash
# Stop the server tests/postgres/start.sh started in DIR and remove it.
set -uo pipefail
dir=${1:?usage: tests/postgres/stop.sh DIR}
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
if [ "$(id -u)" = 0 ]; then
  runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1
else
  "$bin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1
fi
rm -rf "$dir"

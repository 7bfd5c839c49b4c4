#!/usr/bin/env bash
# Packaging checks: the container image's build steps run as a script on this machine, and the
# Kubernetes manifests and the HAProxy example are valid and name the real flags, ports and
# paths (their config passes `portcullis check`). No container runtime is needed.
# Usage: tests/packaging/run.sh [TARGET_DIR/debug]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The image's build stage, in the debug profile (the image builds --release).
"$root/deploy/container/build-rootfs.sh" "$work/rootfs"

# YAML is read with PyYAML, from Debian's python3 if it has it, else pinned from PyPI.
python=python3
if ! python3 -c 'import yaml' 2>/dev/null; then
  python3 -m venv "$work/venv"
  "$work/venv/bin/pip" install -q --disable-pip-version-check pyyaml==6.0.2
  python="$work/venv/bin/python"
fi
haproxy=$(command -v haproxy || echo /usr/sbin/haproxy)
"$python" "$here/check.py" "$root" "$work" "$work/rootfs/usr/local/bin/portcullis" "$haproxy"

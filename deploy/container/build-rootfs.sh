#!/usr/bin/env bash
# Build portcullis and lay out the runtime image's files under OUT: the binary, an unprivileged
# user (uid 10001), and the folders the container mounts or writes. The Dockerfile runs this in
# its build stage; tests/packaging/run.sh runs it on the host to check the same steps.
# Usage: deploy/container/build-rootfs.sh OUT [--release]
set -euo pipefail
out=${1:?usage: build-rootfs.sh OUT [--release]}
profile=debug
[ "${2:-}" = "--release" ] && profile=release
cd "$(dirname "$0")/../.."
target=${CARGO_TARGET_DIR:-target}

cargo build --locked -p portcullis --bin portcullis $([ "$profile" = release ] && echo --release)

mkdir -p "$out/usr/local/bin" "$out/etc/portcullis" "$out/var/lib/portcullis" "$out/etc"
install -m 0755 "$target/$profile/portcullis" "$out/usr/local/bin/portcullis"
# No shell, no home to write to: the image runs as this user with a read-only root filesystem;
# /var/lib/portcullis (SQLite trail, pin store, identity key) and /tmp are the writable mounts.
printf 'root:x:0:0:root:/root:/sbin/nologin\nportcullis:x:10001:10001:portcullis:/var/lib/portcullis:/sbin/nologin\n' >"$out/etc/passwd"
printf 'root:x:0:\nportcullis:x:10001:\n' >"$out/etc/group"
echo "rootfs in $out ($profile): $(du -sh "$out/usr/local/bin/portcullis" | cut -f1) binary"

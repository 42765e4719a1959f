#!/usr/bin/env bash
# Builds the fleet's base image, `synth-city-base:bookworm`, from Debian's own packages: a
# minimal Debian 12 root made by debootstrap (from deb.debian.org, or $DEBIAN_MIRROR) with what
# the fleet's containers run besides our binary (redis-server for the Redis service, python3
# and its venv module for the S3 service, ca-certificates, curl for health checks, procps),
# imported once into the local Docker engine. No registry is needed or used: the other images
# are built FROM this one (ops/docker/build.sh). Does nothing when the image exists already
# (FORCE=1 rebuilds it).
#
# Usage: ops/docker/base.sh        (needs root or sudo for debootstrap, and a running dockerd)
set -euo pipefail
cd "$(dirname "$0")/../.."
. ops/lib.sh

IMAGE=${BASE_IMAGE:-synth-city-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if [ -z "${FORCE:-}" ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "==> $IMAGE is there already"
    exit 0
fi
ensure_command debootstrap debootstrap
root=$(mktemp -d /tmp/synth-city-base.XXXXXX)
trap 'as_root rm -rf "$root"' EXIT
echo "==> debootstrap bookworm into $root (from $MIRROR)"
as_root debootstrap --variant=minbase \
    --include=ca-certificates,redis-server,python3,python3-venv,curl,procps \
    bookworm "$root" "$MIRROR" >/tmp/synth-city-debootstrap.log 2>&1 || {
    tail -20 /tmp/synth-city-debootstrap.log >&2
    exit 1
}
# a smaller image: no apt lists, docs or man pages
as_root rm -rf "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/*
echo "==> importing $IMAGE"
as_root tar -C "$root" -c . | docker import \
    --change 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' - "$IMAGE" >/dev/null
docker image inspect "$IMAGE" --format '{{.Id}} {{.Size}}'

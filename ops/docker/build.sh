#!/usr/bin/env bash
# Builds the fleet's images in the local Docker engine, from our own files only:
#   synth-city:local      the fleet (CPU): ops/docker/Dockerfile, with the synth-city binary
#   synth-city-s3:local   the compose fleet's S3 server (moto): ops/docker/Dockerfile.s3
#   synth-city-cuda:local (--cuda) a CUDA trainer pod: ops/docker/Dockerfile.cuda, with the
#                         binary of ops/cuda-build.sh; needs the nvidia/cuda base image, which
#                         only a machine that reaches a registry has
# on the base image of ops/docker/base.sh (built first when missing). Each build's context is a
# staged folder under target/docker/ holding just what the image copies.
#
# Usage: ops/docker/build.sh [--profile release|debug] [--cuda]
#   --profile  which cargo build of the binary goes in (default release; the docker test suite
#              uses debug, which `cargo test` has built already)
set -euo pipefail
cd "$(dirname "$0")/../.."
profile=release cuda=
while [ $# -gt 0 ]; do
    case "$1" in
    --profile) profile=$2; shift 2 ;;
    --cuda) cuda=1; shift ;;
    *) echo "unknown argument $1 (use --profile release|debug, --cuda)" >&2; exit 2 ;;
    esac
done
case "$profile" in release) flag=--release ;; debug) flag= ;; *) echo "--profile release|debug" >&2; exit 2 ;; esac

ops/docker/base.sh
stage() { # NAME: a fresh staging folder
    local d=target/docker/$1
    rm -rf "$d" && mkdir -p "$d" && echo "$d"
}

echo "==> cargo build $flag --bin synth-city"
cargo build $flag --bin synth-city --quiet
ctx=$(stage fleet)
cp "target/$profile/synth-city" ops/docker/Dockerfile "$ctx/"
mkdir "$ctx/data" && cp data/sample/*.csv "$ctx/data/"
echo "==> docker build synth-city:local ($profile binary)"
docker build -q -t synth-city:local "$ctx" >/dev/null

if ! docker image inspect synth-city-s3:local >/dev/null 2>&1 || [ -n "${FORCE:-}" ]; then
    ctx=$(stage s3)
    cp ops/docker/Dockerfile.s3 ops/requirements-moto.txt "$ctx/"
    # pip in the build trusts what the host trusts (PIP_CERT, else the system bundle)
    cp "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}" "$ctx/build-ca.crt"
    echo "==> docker build synth-city-s3:local (pip install moto, host network)"
    docker build -q --network host -t synth-city-s3:local -f "$ctx/Dockerfile.s3" "$ctx" >/dev/null
fi

if [ -n "$cuda" ]; then
    bin=target/cuda/release/synth-city
    [ -x "$bin" ] || { echo "no $bin: run ops/cuda-build.sh first" >&2; exit 1; }
    ctx=$(stage cuda)
    cp "$bin" ops/docker/Dockerfile.cuda "$ctx/"
    echo "==> docker build synth-city-cuda:local"
    docker build -q -t synth-city-cuda:local -f "$ctx/Dockerfile.cuda" "$ctx" >/dev/null
fi
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep '^synth-city'

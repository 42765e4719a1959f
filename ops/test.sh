#!/usr/bin/env bash
# The test command: installs what the tests need (redis-server, openssl, python3 with venv for
# moto, chromium, curl/jq, prometheus), then checks formatting, lints, runs every test, and,
# where a Docker engine runs, the docker suite (ops/docker/test.sh). Tests start their own
# redis-server processes on free ports; nothing here touches a running Redis.
set -euo pipefail
cd "$(dirname "$0")/.."

. ops/lib.sh
ensure_redis_installed
ensure_openssl_installed
ensure_moto_prereqs_installed
ensure_chromium_installed
ensure_skill_tools_installed
ensure_prometheus_installed
# Debian's package may start a system Redis on 6379; the tests never use it.

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "==> cargo test"
cargo test --workspace
# The docker suite: the fleet as separate hosts in containers (ops/docker/test.sh). It needs a
# Docker engine; without one (or with SKIP_DOCKER_SUITE=1) it is skipped, saying so.
echo "==> docker suite"
if [ -n "${SKIP_DOCKER_SUITE:-}" ]; then
    echo "    skipped: SKIP_DOCKER_SUITE is set"
elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    ops/docker/test.sh
else
    echo "    skipped: no Docker engine here (ops/docker/test.sh runs it where there is one)"
fi

#!/usr/bin/env bash
# Set up and run synth-city on one machine: install redis-server if missing,
# start it if nothing answers, build, migrate, then run the scheduler and the
# HTTP bridge in the background and a worker for every job type in the foreground.
#
#   REDIS_PORT   port of the local Redis (default 6379)
#   REDIS_URL    use this Redis instead of starting one
#   CONCURRENCY  worker concurrency (default 8)
#   BRIDGE_PORT  the HTTP bridge's port (default 8377, loopback only)
set -euo pipefail
cd "$(dirname "$0")/.."

. ops/lib.sh
ensure_redis_installed

port="${REDIS_PORT:-6379}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:${port}}"
if ! redis-cli -u "$REDIS_URL" ping >/dev/null 2>&1; then
  echo "==> starting redis-server on 127.0.0.1:${port} (data in ./data/redis, AOF on)"
  mkdir -p data/redis
  redis-server --port "$port" --bind 127.0.0.1 --dir "$PWD/data/redis" \
    --appendonly yes --appendfsync everysec --daemonize yes \
    --logfile "$PWD/data/redis/redis.log"
  for _ in $(seq 50); do redis-cli -u "$REDIS_URL" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

echo "==> building (release)"
cargo build --release --quiet
bin=target/release/synth-city

echo "==> migrating the Redis key layout"
"$bin" migrate

echo "==> starting the cron scheduler and the HTTP bridge (background; dashboard at"
echo "    http://127.0.0.1:${BRIDGE_PORT:-8377}/dashboard) and a worker for every job type"
"$bin" scheduler &
sched=$!
"$bin" bridge --port "${BRIDGE_PORT:-8377}" &
bridge=$!
trap 'kill "$sched" "$bridge" 2>/dev/null || true' EXIT
"$bin" jobs enqueue --type noop >/dev/null
exec "$bin" worker --roles all --concurrency "${CONCURRENCY:-8}" --metrics-addr 127.0.0.1:9464

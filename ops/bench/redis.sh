# ops/bench/redis.sh: sourced by the benchmark scripts. bench_redis_start PORT starts a
# redis-server of the script's own (127.0.0.1, no persistence, in a fresh temporary DIR), waits
# until it answers, and on exit stops it (by its PID, waiting for it, so a next run may take
# the port at once) and removes DIR. Sets DIR and URL. bench_callgrind_redis_start PORT does
# the same with the redis-server under valgrind's callgrind (its output DIR/cg.<pid>), and
# sets VG_PID too.
bench_redis_start() {
  local port=$1
  DIR=$(mktemp -d)
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$DIR" \
    --daemonize yes --pidfile "$DIR/redis.pid" >/dev/null
  for _ in $(seq 50); do [ -f "$DIR/redis.pid" ] && break; sleep 0.1; done
  BENCH_REDIS_PID=$(cat "$DIR/redis.pid") || {
    echo "redis-server did not start on port $port (in use?)" >&2
    exit 1
  }
  trap 'kill "$BENCH_REDIS_PID" 2>/dev/null
        while kill -0 "$BENCH_REDIS_PID" 2>/dev/null; do sleep 0.1; done
        rm -rf "$DIR"' EXIT
  for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  URL=redis://127.0.0.1:$port
}

bench_callgrind_redis_start() {
  local port=$1
  DIR=$(mktemp -d)
  valgrind --tool=callgrind --callgrind-out-file="$DIR/cg.%p" --dump-instr=no \
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$DIR" \
    >"$DIR/log" 2>&1 &
  VG_PID=$!
  trap 'redis-cli -p "'"$port"'" shutdown nosave >/dev/null 2>&1 || kill "$VG_PID" 2>/dev/null
        wait "$VG_PID" 2>/dev/null; rm -rf "$DIR"' EXIT
  for _ in $(seq 300); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.2; done
  URL=redis://127.0.0.1:$port
}

#!/usr/bin/env bash
# Load benchmark of the bridge's enqueue route: wrk POSTs /jobs ({"type":"noop"})
# over loopback to a release `synth-city bridge` backed by a throwaway
# redis-server (no persistence), and reports requests/s and latency
# percentiles. Every request is one real enqueue (enqueue.lua in Redis).
#
#   ops/bench/bridge-enqueue.sh [DURATION_S=20] [CONNECTIONS=64] [THREADS=2]
#
# Needs: wrk (apt-get install wrk), redis-server, target/release/synth-city
# (cargo build --release). Uses free ports on 127.0.0.1; never 6379.
set -euo pipefail
cd "$(dirname "$0")/../.."
DUR=${1:-20}; CONNS=${2:-64}; THREADS=${3:-2}
BIN=target/release/synth-city
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
[ -x "$BIN" ] || { echo "$BIN is missing: cargo build --release" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RPORT=$(free_port); BPORT=$(free_port)
TMP=$(mktemp -d)
cleanup() {
  [ -n "${BPID:-}" ] && kill "$BPID" 2>/dev/null || true
  [ -f "$TMP/redis.pid" ] && kill "$(cat "$TMP/redis.pid")" 2>/dev/null || true
  sleep 0.3; rm -rf "$TMP"
}
trap cleanup EXIT
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
  --dir "$TMP" --pidfile "$TMP/redis.pid" >/dev/null
for _ in $(seq 50); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
URL="redis://127.0.0.1:$RPORT"
"$BIN" --redis-url "$URL" --prefix bench migrate >/dev/null 2>&1
export BRIDGE_API_KEY=bench-key
RUST_LOG=warn "$BIN" --redis-url "$URL" --prefix bench bridge --port "$BPORT" \
  --rate-per-min 1000000000 >"$TMP/bridge.log" 2>&1 &
BPID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$BPORT/health" >/dev/null && break; sleep 0.1; done
echo "== warm-up (3 s)"
wrk -t"$THREADS" -c"$CONNS" -d3s -s ops/bench/enqueue.lua "http://127.0.0.1:$BPORT/jobs" >/dev/null
echo "== wrk -t$THREADS -c$CONNS -d${DUR}s POST /jobs"
wrk -t"$THREADS" -c"$CONNS" -d"${DUR}s" --latency -s ops/bench/enqueue.lua "http://127.0.0.1:$BPORT/jobs"
echo "== jobs in Redis (noop waiting):"
redis-cli -p "$RPORT" xlen "{bench}:q:noop"

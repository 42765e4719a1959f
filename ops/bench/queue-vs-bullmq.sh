#!/usr/bin/env bash
# ops/bench/queue-vs-bullmq.sh: our queue against the official BullMQ Rust port
# (`bullmq-official`, ops/bench/bullmq-peer/), interleaved round by round on one redis-server of
# its own (--save '' --appendonly no, PORT), printing each round's jobs/s, the ratio, the load
# average beside it, and the medians. Optionally a second synth-city binary (BASE, e.g. an
# older commit's release build) runs in the same rounds, for before/after comparisons.
#
#   ops/bench/queue-vs-bullmq.sh
#   env: OURS (target/release/synth-city), BASE (none), PEER (built here when unset),
#        JOBS (20000), ROUNDS (5), PORT (16483), MODE (bulk | single),
#        SHAPE (more `bench queue` arguments for ours and base, e.g. '--concurrency 512
#        --batch 128'), PEER_CONCURRENCY (100)
#   bulk:   ours `bench queue --jobs N --workers 1` (enqueue batches of 500);
#           peer `add_bulk` chunks of 1,000, one worker of concurrency 100.
#   single: one job per enqueue call, one producer awaiting each: ours `--enqueue-batch 1`;
#           peer `add` x N.
# Stops only the redis-server it started.
set -euo pipefail
cd "$(dirname "$0")/../.."
OURS=${OURS:-target/release/synth-city}
BASE=${BASE:-}
JOBS=${JOBS:-20000}
ROUNDS=${ROUNDS:-5}
PORT=${PORT:-16483}
MODE=${MODE:-bulk}
if [ -z "${PEER:-}" ]; then
  export CARGO_TARGET_DIR=${BULLMQ_PEER_TARGET:-/tmp/bullmq-peer-target}
  cargo build --release --quiet --manifest-path ops/bench/bullmq-peer/Cargo.toml
  PEER=$CARGO_TARGET_DIR/release/bullmq-peer
fi
. ops/bench/redis.sh
bench_redis_start "$PORT"
echo "# redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'), $JOBS jobs, mode $MODE, shape '${SHAPE:-}', peer concurrency ${PEER_CONCURRENCY:-100}, $(nproc) cpus, $(date -u +%FT%TZ)"

rate() { sed -n 's/.*"jobs_per_sec":\([0-9.]*\).*/\1/p' | head -1; }
ours() { # BIN -> jobs/s
  local args=(--workers 1)
  [ "$MODE" = single ] && args+=(--enqueue-batch 1 --producers 1)
  # shellcheck disable=SC2206 # SHAPE is a list of arguments
  args+=(${SHAPE:-})
  "$1" --redis-url "$URL" --prefix qvb bench queue --jobs "$JOBS" "${args[@]}" --json 2>/dev/null | rate
}
peer() {
  local chunk=1000
  [ "$MODE" = single ] && chunk=1
  "$PEER" "$URL" "$JOBS" "${PEER_CONCURRENCY:-100}" "$chunk" | rate
}
load() { cut -d' ' -f1 /proc/loadavg; }

printf '%-6s %10s %10s %8s' round ours peer ratio
[ -n "$BASE" ] && printf ' %10s %8s' base ours/base
printf ' %6s\n' load
R=() B=()
for r in $(seq "$ROUNDS"); do
  o=$(ours "$OURS"); p=$(peer)
  ratio=$(awk -v a="$o" -v b="$p" 'BEGIN { printf "%.2f", a / b }')
  R+=("$ratio")
  printf '%-6s %10.0f %10.0f %8s' "$r" "$o" "$p" "$ratio"
  if [ -n "$BASE" ]; then
    b=$(ours "$BASE")
    rb=$(awk -v a="$o" -v b="$b" 'BEGIN { printf "%.3f", a / b }')
    B+=("$rb")
    printf ' %10.0f %8s' "$b" "$rb"
  fi
  printf ' %6s\n' "$(load)"
done
median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
echo "median ours/peer: $(median "${R[@]}")"
[ -n "$BASE" ] && echo "median ours/base: $(median "${B[@]}")"
exit 0

#!/usr/bin/env bash
# Wall time of one pipeline run whose train stage fans out over 1, 2, 4 ... trainer processes:
# for each count, a throwaway redis-server, one `agents,publisher,engine` worker, and one
# built-in run of EXPERIMENTS experiments (one round, a small budget). Once the run is
# planned (its `train` job waits, no trainer is up yet), its plan is replaced by the same
# balanced plan in every count: EXPERIMENTS copies of the first count's first planned
# experiment made an LSTM with a GBM head, each with another learning rate (so another
# fingerprint, the same cost). The
# planner seeds itself with the run's creation time and mixes architectures whose costs differ
# tenfold, so one slow experiment would otherwise be the whole train stage. Then N `--roles trainer
# --concurrency 1` workers start (each in its own work directory, one shared store
# directory). Prints, per count: the wall time from the trainers' start to the run's end
# (train, fan-in, check), the train stage's span (first child's start to last child's end,
# Redis's clock), how many trainers took a child, and each experiment's span.
#
#   ops/bench/fanout.sh [TRAINERS="1 2 4"] [EXPERIMENTS=4] [STEPS_PER_EPOCH=1000]
#
# (An epoch is at most one pass over the training windows, so more steps stop adding time;
# the budget is 2 epochs of a width-64, 64-bar LSTM: about 9 s per experiment alone on an
# idle 2-vCPU EPYC.)
#
# Needs: redis-server, jq, target/release/synth-city (cargo build --release; BIN=... for
# another build), the bars in data/ or ../shared/data (DATA=... otherwise). Uses free ports
# on 127.0.0.1; never 6379. Stops only what it started.
set -euo pipefail
cd "$(dirname "$0")/../.."
COUNTS=${1:-"1 2 4"}; EXPERIMENTS=${2:-4}; STEPS=${3:-1000}
BIN=${BIN:-target/release/synth-city}
DATA=${DATA:-}
export RUST_LOG=${RUST_LOG:-warn}
if [ -z "$DATA" ]; then
  for d in data ../shared/data data/sample; do [ -f "$d/BTC_5m.csv" ] && { DATA=$d; break; }; done
fi
[ -x "$BIN" ] || { echo "$BIN is missing: cargo build --release" >&2; exit 1; }
[ -f "${DATA:-}/BTC_5m.csv" ] || { echo "no BTC_5m.csv: set DATA=DIR" >&2; exit 1; }
command -v jq >/dev/null || { echo "jq is missing: apt-get install jq" >&2; exit 1; }
DATA=$(cd "$DATA" && pwd)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PIDS=()
TMP=$(mktemp -d)
stop_all() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
  [ -f "$TMP/redis.pid" ] && kill "$(cat "$TMP/redis.pid")" 2>/dev/null || true
  rm -f "$TMP/redis.pid"
}
trap 'stop_all; rm -rf "$TMP"' EXIT
BUDGET=(--epochs 2 --steps-per-epoch "$STEPS" --d-model 64 --seq-len 64 --batch-size 8
        --n-paths 16 --eval-windows 4 --eval-paths 200)
echo "$(date -u '+%F %H:%M UTC'), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $BIN"
echo "run: $EXPERIMENTS experiments (LSTM + GBM head, $EXPERIMENTS learning rates), 1 round, ${BUDGET[*]}"
echo "(run: the trainers' start to the run's end; train: first child's start to last child's end)"
printf '%-9s %10s %12s %9s %s\n' trainers "run (s)" "train (s)" "workers" "experiment spans (s)"
PLAN="$TMP/plan.json"
for n in $COUNTS; do
  RUN_DIR="$TMP/n$n"; mkdir -p "$RUN_DIR/store"
  RPORT=$(free_port)
  redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --dir "$TMP" --pidfile "$TMP/redis.pid" >/dev/null
  for _ in $(seq 50); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  SC=("$BIN" --redis-url "redis://127.0.0.1:$RPORT" --prefix bench)
  "${SC[@]}" migrate >/dev/null 2>&1
  worker() { # name roles
    mkdir -p "$RUN_DIR/$1"
    RUST_LOG=warn "${SC[@]}" worker --roles "$2" --concurrency 1 --name "$1" \
      --data-dir "$DATA" --work-dir "$RUN_DIR/$1/work" --store "$RUN_DIR/store" \
      >"$RUN_DIR/$1.log" 2>&1 &
    PIDS+=($!)
  }
  worker agents agents,publisher,engine
  id=$("${SC[@]}" pipeline --enqueue-only --agents builtin --json --rounds 1 --retries 1 \
        --max-experiments "$EXPERIMENTS" "${BUDGET[@]}" --data-dir "$DATA" | jq -r .run_id)
  until [ "$("${SC[@]}" runs show "$id" --json | jq -r .stage)" = train ]; do sleep 0.2; done
  if [ ! -f "$PLAN" ]; then
    "${SC[@]}" runs show "$id" --json | jq -c --argjson n "$EXPERIMENTS" '.task.plan
      | .experiments[0] as $e
      | .experiments = [range($n) | . as $i | $e | .model.backbone.blocks = ["LSTMBlock"]
          | .model.head = {kind: "GBMHead"} | .training.lr = ($e.training.lr * (1 + 0.25 * $i))]
      | .rationale = [range($n) | "ops/bench/fanout.sh: copy \(.) of one experiment"]' >"$PLAN"
  fi
  "${SC[@]}" runs show "$id" --json | jq -c --slurpfile p "$PLAN" '.task | .plan = $p[0]' \
    | redis-cli -p "$RPORT" -x HSET "{bench}:run:$id" task >/dev/null
  t0=$(date +%s.%N)
  for i in $(seq "$n"); do worker "trainer-$i" trainer; done
  while :; do
    state=$("${SC[@]}" runs show "$id" --json | jq -r .state)
    case $state in succeeded|failed|cancelled) break;; esac
    sleep 0.2
  done
  t1=$(date +%s.%N)
  run=$("${SC[@]}" runs show "$id" --json)
  train=$(jq -r '[.task.stages[] | select(.stage == "train")][0].seconds' <<<"$run")
  workers=$(jq -r '[.task.children[].worker] | unique | length' <<<"$run")
  spans=$(jq -r '[.task.children[] | ((.finished_at_ms - .started_at_ms) / 1000 * 10 | round / 10)] | map(tostring) | join(" ")' <<<"$run")
  names=$(jq -r '[.task.results[] | .name] | sort | join(",")' <<<"$run")
  [ -n "${FIRST_NAMES:-}" ] || FIRST_NAMES=$names
  [ "$names" = "$FIRST_NAMES" ] || echo "warning: another plan than the first count's: $names" >&2
  printf '%-9s %10.1f %12.1f %9s %s  (%s)\n' "$n" "$(echo "$t1 - $t0" | bc)" "$train" "$workers" "$spans" "$state"
  stop_all
done

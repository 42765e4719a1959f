#!/usr/bin/env bash
# Set up synth-city on one machine and start its main job:
#
#   1. install redis-server if missing and start it (unless one answers already);
#   2. build (release) and migrate;
#   3. market data: fresh bars from the venues when they answer (`synth-city data download`,
#      with a progress bar), and the real sample shipped in data/sample/ wherever the data
#      directory has nothing newer;
#   4. start the cron scheduler, the HTTP bridge (dashboard) and a worker for every job type,
#      in the background;
#   5. enqueue a first research run (unless the store already has a published model), follow
#      it live until its model is published, check the miner (`mine --check`) and start it in
#      the background: it serves each (asset, prompt) pair's champion, the GBM until a model
#      passes the promotion gate (`synth-city models promote RUN/NAME --asset BTC`,
#      docs/promotion.md);
#   6. enqueue, once, a classical model (ewma-tod-t) through the promotion gate for every pair
#      with bars: the worker decides in the background, and each pair it wins is served;
#   7. print where to look: the dashboard, `runs list`, the logs, how to stop.
#
# Running it again is safe: processes it started are found by their PID files and left
# running, the data is not fetched again while it is fresh, and no second run is started
# while a published model is in the store.
#
#   ./ops/setup.sh          set up and start (the default)
#   ./ops/setup.sh status   what runs, by PID file
#   ./ops/setup.sh stop     stop exactly the processes it started (by PID file)
#
# Everything it uses can be set from the environment, so two copies can run side by side:
#   REDIS_PORT          the local Redis's port (default 6379); REDIS_URL: use that Redis instead
#   BRIDGE_PORT         the HTTP bridge and dashboard (default 8377, loopback only)
#   BRIDGE_LOOPBACK_OPERATOR  1 (default here): callers on this machine without a key act as
#                       the operator (the dashboard, `synth-city client`, a local bot); 0: every
#                       request needs a key (`synth-city bots add NAME`; docs/bridge.md)
#   METRICS_PORT        the worker's Prometheus /metrics (default 9464)
#   MINER_PORT          the SN50 miner's axon (default 8091, loopback)
#   MINER_METRICS_PORT  the miner's /metrics (default 9465)
#   SYNTH_CITY_PREFIX   the deployment's Redis key prefix (default sc)
#   SYNTH_STATE_DIR     PID files, logs, Redis's files (default .synth-city)
#   SYNTH_DATA_DIR, SYNTH_WORK_DIR, SYNTH_STORE_DIR   bars, scratch, the store (data, runs, store)
#   SYNTH_BIN           a synth-city binary to use instead of building the release one
#   CONCURRENCY         worker concurrency (default 8)
#   SETUP_RUN           first (default: a run only when no model is published yet), always, never
#   SETUP_RUN_ARGS      the run's flags (default: built-in agents, BTC 5m, the default budget,
#                       --publish); `synth-city pipeline --help` lists them
#   SETUP_RUN_TIMEOUT   seconds to wait for the run (default 3600)
#   SETUP_DOWNLOAD      auto (default: when the venues answer and the bars are older than
#                       SETUP_DATA_MAX_AGE_H hours, default 24) or never
#   SETUP_MINER         1 (default: check and start the miner) or 0
#   SETUP_CLASSICAL     a classical model put through the promotion gate for every pair with
#                       bars, once, as background `promote` jobs (default ewma-tod-t; the miner
#                       serves each pair it wins without a restart), or none.
#                       SETUP_CLASSICAL_ASSETS (default all), SETUP_CLASSICAL_WINDOWS and
#                       SETUP_CLASSICAL_PATHS (default: the gate's 40 windows, 1000 paths)
#   MINER_ARGS          the miner's identity flags (default: the wallet BT_WALLET_NAME /
#                       BT_HOTKEY_NAME when it exists, else the dev hotkey //Bob, callers
#                       allowed: //Alice), e.g. "--wallet-name miner --metagraph-file m.json"
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

. ops/lib.sh

abs() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$root/$1" ;; esac; }

state=$(abs "${SYNTH_STATE_DIR:-.synth-city}")
pids=$state/pids
logs=$state/logs
SYNTH_DATA_DIR=$(abs "${SYNTH_DATA_DIR:-data}")
SYNTH_WORK_DIR=$(abs "${SYNTH_WORK_DIR:-runs}")
SYNTH_STORE_DIR=$(abs "${SYNTH_STORE_DIR:-store}")
export SYNTH_DATA_DIR SYNTH_WORK_DIR SYNTH_STORE_DIR
redis_port=${REDIS_PORT:-6379}
bridge_port=${BRIDGE_PORT:-8377}
metrics_port=${METRICS_PORT:-9464}
miner_port=${MINER_PORT:-8091}
miner_metrics_port=${MINER_METRICS_PORT:-9465}

# --- processes started here, one PID file each -------------------------------------------

# The word a process's command line holds, so that a PID reused by another program is not
# taken for ours.
marker() { case "$1" in redis) echo redis-server ;; miner) echo mine ;; *) echo "$1" ;; esac; }

# running NAME: prints the PID of NAME when the process of its PID file still runs what was
# started (not a zombie, not a reused PID).
running() {
  local f=$pids/$1.pid pid st
  [ -s "$f" ] || return 1
  pid=$(tr -dc 0-9 <"$f")
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  st=$(sed 's/.*) //' "/proc/$pid/stat" | cut -d' ' -f1)
  [ "$st" != Z ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qw -- "$(marker "$1")" || return 1
  echo "$pid"
}

stop_one() {
  local name=$1 pid
  [ -f "$pids/$name.pid" ] || return 0
  if pid=$(running "$name"); then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 200); do running "$name" >/dev/null || break; sleep 0.1; done
    if running "$name" >/dev/null; then
      echo "    $name (pid $pid) did not stop within 20 s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    echo "    stopped $name (pid $pid)"
  else
    echo "    $name was not running (stale PID file)"
  fi
  rm -f "$pids/$name.pid"
}

if [ "${1:-start}" = stop ]; then
  echo "==> stopping what ops/setup.sh started (PID files in $pids)"
  for name in miner worker bridge scheduler redis; do stop_one "$name"; done
  exit 0
fi
if [ "${1:-start}" = status ]; then
  for name in redis scheduler bridge worker miner; do
    if pid=$(running "$name"); then echo "$name running (pid $pid)"; else echo "$name not running"; fi
  done
  exit 0
fi
if [ "${1:-start}" != start ]; then
  echo "usage: ops/setup.sh [start|status|stop]" >&2
  exit 2
fi

mkdir -p "$pids" "$logs" "$SYNTH_DATA_DIR" "$SYNTH_WORK_DIR" "$SYNTH_STORE_DIR"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start_bg NAME COMMAND...: runs COMMAND in its own session (a Ctrl-C here does not reach it),
# output appended to $logs/NAME.log, PID in $pids/NAME.pid; leaves a running one alone.
start_bg() {
  local name=$1 pid
  shift
  if pid=$(running "$name"); then
    echo "    $name already running (pid $pid)"
    return 0
  fi
  NO_COLOR=1 setsid "$@" >>"$logs/$name.log" 2>&1 </dev/null &
  echo $! >"$pids/$name.pid"
  echo "    $name started (pid $!, log $logs/$name.log)"
}

# await_port NAME PORT: waits until NAME listens on PORT; fails with its log when it dies.
await_port() {
  for _ in $(seq 600); do
    port_open "$2" && return 0
    if ! running "$1" >/dev/null; then
      echo "error: $1 stopped before listening on port $2; the end of $logs/$1.log:" >&2
      tail -n 20 "$logs/$1.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "error: $1 did not listen on port $2 within 60 s (log: $logs/$1.log)" >&2
  exit 1
}

# require_free NAME PORT VAR: a port this setup is about to use must not be another program's.
require_free() {
  if ! running "$1" >/dev/null && port_open "$2"; then
    echo "error: port $2 ($1) is taken by a process this setup did not start; set $3 to a free port" >&2
    exit 1
  fi
}

# --- Redis --------------------------------------------------------------------------------

if [ -n "${REDIS_URL:-}" ]; then
  command -v redis-cli >/dev/null 2>&1 || ensure_redis_installed
  redis-cli -u "$REDIS_URL" ping >/dev/null 2>&1 || {
    echo "error: REDIS_URL=$REDIS_URL does not answer PING; start that Redis or unset REDIS_URL" >&2
    exit 1
  }
  echo "==> using the Redis at REDIS_URL"
else
  ensure_redis_installed
  export REDIS_URL="redis://127.0.0.1:${redis_port}"
  if pid=$(running redis); then
    echo "==> redis-server already running (pid $pid, port $redis_port)"
  elif redis-cli -u "$REDIS_URL" ping >/dev/null 2>&1; then
    echo "==> a Redis this setup did not start answers on port $redis_port: using it (REDIS_PORT picks another)"
  else
    echo "==> starting redis-server on 127.0.0.1:$redis_port (files in $state/redis, AOF on)"
    mkdir -p "$state/redis"
    redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$state/redis" \
      --appendonly yes --appendfsync everysec --daemonize yes \
      --pidfile "$pids/redis.pid" --logfile "$logs/redis.log"
    for _ in $(seq 100); do redis-cli -u "$REDIS_URL" ping >/dev/null 2>&1 && break; sleep 0.1; done
    redis-cli -u "$REDIS_URL" ping >/dev/null || {
      echo "error: redis-server did not answer on port $redis_port (log: $logs/redis.log)" >&2
      exit 1
    }
  fi
fi

# --- build, migrate -----------------------------------------------------------------------

if [ -n "${SYNTH_BIN:-}" ]; then
  bin=$(abs "$SYNTH_BIN")
  echo "==> using $bin (SYNTH_BIN)"
else
  echo "==> building (release; the first build takes 10 to 20 minutes on 2 cores)"
  cargo build --release --quiet
  bin=$root/target/release/synth-city
fi

echo "==> migrating the Redis key layout"
RUST_LOG=${RUST_LOG:-warn} "$bin" migrate

# --- market data --------------------------------------------------------------------------

# The unix time of a bar file's last bar (0 when there is none).
last_bar() { if [ -s "$1" ]; then tail -n 1 "$1" | cut -d, -f1 | tr -dc 0-9; else echo 0; fi; }

echo "==> market data in $SYNTH_DATA_DIR"
newest=$(last_bar "$SYNTH_DATA_DIR/BTC_5m.csv")
age_h=$((($(date +%s) - ${newest:-0}) / 3600))
if [ "${SETUP_DOWNLOAD:-auto}" = never ]; then
  echo "    not downloading (SETUP_DOWNLOAD=never)"
elif [ "$age_h" -lt "${SETUP_DATA_MAX_AGE_H:-24}" ]; then
  echo "    bars are fresh (BTC's last bar is ${age_h} h old): not downloading"
elif ! probe=$(RUST_LOG=off timeout 20 "$bin" data spot --assets BTC 2>&1); then
  echo "    the market venues do not answer (BTC spot: $(printf '%s' "$probe" | tail -n 1 | sed 's/.*: //' | cut -c1-80)); using the bundled real sample"
else
  venues_answer=1
  echo "    the venues answer: downloading the last 30 days of 5-minute bars and 7 days of 1-minute bars"
  # A failed download must not stop the setup: what it merged stays, the sample fills the rest.
  RUST_LOG=warn "$bin" data download --assets BTC,ETH,SOL,XAU,SP500,NVDAX,TSLAX,AAPLX,GOOGLX \
    --days 30 --resolution 5 --data-dir "$SYNTH_DATA_DIR" ||
    echo "    the 5-minute download failed (above); going on with what is there and the sample"
  RUST_LOG=warn "$bin" data download --assets BTC,ETH,SOL --days 7 --resolution 1 \
    --data-dir "$SYNTH_DATA_DIR" ||
    echo "    the 1-minute download failed (above); going on with what is there and the sample"
fi
# The sample: a file copied where the data directory has none, or its newer bars appended
# where the data directory's copy ends earlier; a file with newer bars is left alone.
added=0
if [ "$(cd "$SYNTH_DATA_DIR" && pwd -P)" != "$(cd data/sample && pwd -P)" ]; then
  for src in data/sample/*.csv; do
    dst=$SYNTH_DATA_DIR/$(basename "$src")
    have=$(last_bar "$dst")
    if [ "$have" = 0 ]; then
      cp "$src" "$dst.tmp" && mv "$dst.tmp" "$dst"
    elif [ "$have" -lt "$(last_bar "$src")" ]; then
      { cat "$dst"; awk -F, -v t="$have" 'NR > 1 && $1 > t' "$src"; } >"$dst.tmp" && mv "$dst.tmp" "$dst"
    else
      continue
    fi
    added=$((added + 1))
  done
fi
if [ "$added" -gt 0 ]; then
  echo "    the bundled real sample (data/sample/README.md: the last 30 days of nine assets) filled $added file(s)"
else
  echo "    nothing to add from the bundled sample (the data directory has it or newer)"
fi

# --- the fleet ----------------------------------------------------------------------------

require_free bridge "$bridge_port" BRIDGE_PORT
require_free worker "$metrics_port" METRICS_PORT
echo "==> the fleet (in the background; logs in $logs)"
start_bg scheduler "$bin" scheduler
# one machine, one operator: keyless local callers are the operator unless told otherwise
loopback_operator=${BRIDGE_LOOPBACK_OPERATOR:-1}
case "$loopback_operator" in
  1 | true) bridge_auth=(--loopback-operator) ;;
  0 | false) bridge_auth=() ;;
  *)
    echo "error: BRIDGE_LOOPBACK_OPERATOR must be 1 or 0, not \"$loopback_operator\"" >&2
    exit 2
    ;;
esac
start_bg bridge "$bin" bridge --port "$bridge_port" \
  --data-dir "$SYNTH_DATA_DIR" "${bridge_auth[@]}"
start_bg worker "$bin" worker --roles all --concurrency "${CONCURRENCY:-8}" \
  --metrics-addr "127.0.0.1:$metrics_port" --data-dir "$SYNTH_DATA_DIR" \
  --work-dir "$SYNTH_WORK_DIR" --store "$SYNTH_STORE_DIR"
await_port bridge "$bridge_port"
await_port worker "$metrics_port"
sleep 0.3
running scheduler >/dev/null || {
  echo "error: the scheduler stopped; the end of $logs/scheduler.log:" >&2
  tail -n 20 "$logs/scheduler.log" >&2
  exit 1
}
dashboard="http://127.0.0.1:$bridge_port/dashboard"
echo "    dashboard: $dashboard"
if [ ${#bridge_auth[@]} -gt 0 ]; then
  echo "    bridge: callers on this machine without a key act as the operator (BRIDGE_LOOPBACK_OPERATOR=0 to require keys; bots get theirs from \`synth-city bots add NAME\`)"
else
  echo "    bridge: every request needs a key (BRIDGE_API_KEY, or a bot's from \`synth-city bots add NAME\`)"
fi

# The venues answered: a schedule keeps the bars fresh (the miner's models read their history
# from them, and the classical champions refuse bars more than 4 days old).
if [ -n "${venues_answer:-}" ]; then
  "$bin" schedule add --name bars-5m --cron "*/5 * * * *" --type data-download \
    --payload '{"assets": ["BTC","ETH","SOL","XAU","SP500","NVDAX","TSLAX","AAPLX","GOOGLX"], "days": 1, "resolution": 5}' >/dev/null
  "$bin" schedule add --name bars-1m --cron "*/5 * * * *" --type data-download \
    --payload '{"assets": ["BTC","ETH","SOL"], "days": 1, "resolution": 1}' >/dev/null
  echo "    schedules bars-5m and bars-1m download the last day of bars every 5 minutes (schedule list)"
fi

# --- the first research run ---------------------------------------------------------------

pointer=$SYNTH_STORE_DIR/models/production.json
run_state() { "$bin" runs list --limit 1000 | awk -v id="$1" '$1 == id { print $2 }'; }
run_id=
prev=$(cat "$state/run-id" 2>/dev/null || true)
prev_state=
[ -z "$prev" ] || prev_state=$(run_state "$prev")
case "$prev_state" in
  "" | succeeded | failed | cancelled) ;;
  *)
    run_id=$prev
    echo "==> the run started by an earlier setup, $run_id, is still $prev_state: following it"
    ;;
esac
if [ -z "$run_id" ]; then
  case "${SETUP_RUN:-first}" in
    never) echo "==> no research run (SETUP_RUN=never)" ;;
    first | always)
      if [ "${SETUP_RUN:-first}" = first ] && [ -s "$pointer" ]; then
        echo "==> a published model is in the store already ($pointer): no new run (SETUP_RUN=always starts one)"
      else
        # shellcheck disable=SC2086 # SETUP_RUN_ARGS is a list of flags
        run_id=$("$bin" pipeline --enqueue-only ${SETUP_RUN_ARGS:---agents builtin --assets BTC --timeframe 5m --publish})
        echo "$run_id" >"$state/run-id"
        echo "==> research run $run_id enqueued; it is on the dashboard ($dashboard) as it goes"
      fi
      ;;
    *)
      echo "error: SETUP_RUN must be first, always or never, not \"$SETUP_RUN\"" >&2
      exit 2
      ;;
  esac
fi
if [ -n "$run_id" ]; then
  echo "==> following run $run_id until its model is published (Ctrl-C stops only the following;"
  echo "    the run goes on: $bin runs watch $run_id)"
  if ! timeout "${SETUP_RUN_TIMEOUT:-3600}" "$bin" runs watch "$run_id"; then
    echo "error: run $run_id did not succeed; see \`$bin runs show $run_id\` and $logs/worker.log" >&2
    echo "    the fleet keeps running; ./ops/setup.sh stop stops it" >&2
    exit 1
  fi
fi

# --- classical champions --------------------------------------------------------------------
# A classical model through the promotion gate for every pair with bars, once, as background
# `promote` jobs for the worker: each pair it wins gets a champion, which the miner serves
# without a restart (docs/promotion.md, "Classical champions").

classical=${SETUP_CLASSICAL:-ewma-tod-t}
if [ "$classical" != none ] && [ ! -e "$state/classical-enqueued" ]; then
  assets=$(printf '%s' "${SETUP_CLASSICAL_ASSETS:-all}" | sed 's/[^,][^,]*/"&"/g')
  extra=
  [ -z "${SETUP_CLASSICAL_WINDOWS:-}" ] || extra="$extra,\"windows\":$SETUP_CLASSICAL_WINDOWS"
  [ -z "${SETUP_CLASSICAL_PATHS:-}" ] || extra="$extra,\"paths\":$SETUP_CLASSICAL_PATHS"
  for p in low high; do
    "$bin" jobs enqueue --type promote --idempotency-key "setup-classical-$classical-$p" \
      --payload "{\"candidate\":\"classical:$classical\",\"assets\":[$assets],\"prompt\":\"$p\"$extra}" >/dev/null
  done
  touch "$state/classical-enqueued"
  echo "==> classical:$classical enqueued for the promotion gate on every pair with bars (${SETUP_CLASSICAL_ASSETS:-all});"
  echo "    the worker decides in the background: $bin models list (the champions), models history (why)"
fi

# --- the miner ----------------------------------------------------------------------------

miner_note=
if [ "${SETUP_MINER:-1}" = 1 ] && [ -s "$pointer" ]; then
  if [ -z "${MINER_ARGS:-}" ]; then
    wallets=${BT_WALLET_PATH:-$HOME/.bittensor/wallets}
    if [ -f "$wallets/${BT_WALLET_NAME:-default}/hotkeys/${BT_HOTKEY_NAME:-default}" ]; then
      MINER_ARGS="--allow-hotkeys 5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
      miner_note="the local miner answers callers signed as //Alice only; MINER_ARGS with --metagraph-file or --metagraph-url serves validators (docs/miner.md)"
    else
      MINER_ARGS="--hotkey-uri //Bob --allow-hotkeys 5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
      miner_note="no Bittensor wallet at $wallets/${BT_WALLET_NAME:-default}: the local miner uses the dev hotkey //Bob and answers //Alice (MINER_ARGS changes both; docs/miner.md)"
    fi
  fi
  # shellcheck disable=SC2086 # MINER_ARGS is a list of flags
  miner_cmd=("$bin" mine --port "$miner_port" --store-dir "$SYNTH_STORE_DIR" --data-dir "$SYNTH_DATA_DIR" $MINER_ARGS)
  if pid=$(running miner); then
    echo "==> the miner is already running (pid $pid, http://127.0.0.1:$miner_port/Simulation)"
  else
    require_free miner "$miner_port" MINER_PORT
    require_free miner "$miner_metrics_port" MINER_METRICS_PORT
    echo "==> checking the miner (mine --check; it serves champions, the GBM until a model passes the gate)"
    if ! RUST_LOG=off "${miner_cmd[@]}" --check | sed 's/^/    /'; then
      echo "error: mine --check failed (above); the fleet keeps running; ./ops/setup.sh stop stops it" >&2
      exit 1
    fi
    [ -z "$miner_note" ] || echo "    note: $miner_note"
    echo "==> mine --check passed; starting the miner"
    # The verified nonces survive a restart next to the PID files (unless MINER_ARGS names a file).
    nonce_args=(--nonce-file "$state/miner-nonces.jsonl")
    case " $MINER_ARGS " in *" --nonce-file"*) nonce_args=() ;; esac
    start_bg miner "${miner_cmd[@]}" --metrics-addr "127.0.0.1:$miner_metrics_port" "${nonce_args[@]}"
    await_port miner "$miner_port"
  fi
elif [ "${SETUP_MINER:-1}" = 1 ]; then
  echo "==> no published model in $SYNTH_STORE_DIR yet: the miner is not started"
fi

# --- where to look ------------------------------------------------------------------------

cli="REDIS_URL=$REDIS_URL${SYNTH_CITY_PREFIX:+ SYNTH_CITY_PREFIX=$SYNTH_CITY_PREFIX} $bin"
echo
echo "synth-city is running (PID files and logs in $state):"
echo "  dashboard       $dashboard"
echo "  runs            $cli runs list"
[ -z "$run_id" ] || echo "  this run        $cli runs show $run_id"
if [ -s "$pointer" ]; then
  echo "  published model $pointer"
fi
if pid=$(running miner); then
  echo "  miner           http://127.0.0.1:$miner_port/Simulation (metrics http://127.0.0.1:$miner_metrics_port/metrics)"
fi
echo "  worker metrics  http://127.0.0.1:$metrics_port/metrics"
echo "  logs            $logs/{scheduler,bridge,worker,miner}.log"
echo "  stop            ./ops/setup.sh stop   (with the same SYNTH_STATE_DIR)"

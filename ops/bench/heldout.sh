#!/usr/bin/env bash
# Held-out comparison for issue 15: train a zoo model per asset on everything but the last
# HOLDOUT days of its file, then score it, the classical anchors and the reference GBM on the
# same prompt windows inside those days (`score backtest --last-days`), with today's scoring.
#
#   ops/bench/heldout.sh TAG PROMPT ASSETS -- <experiment flags>
#   e.g. ops/bench/heldout.sh ewma high BTC,ETH,SOL -- --preset lstm_gbm --scale ewma
#
# Env: BIN (target/release/synth-city), DATA (../shared/data), HOLDOUT (60), WINDOWS (100),
# SEED (2), PATHS (500), ANCHORS (garch-tod-t), BLEND (empty; a model name: also score the
# ensemble mix:<checkpoint>,BLEND), OUT (runs/heldout). Prints one line per asset and model:
# ratio to the GBM (mean total score), calm/middle/volatile tercile ratios, windows answered
# by the GBM because the model could not (fallbacks).
set -euo pipefail
tag=$1 prompt=$2 assets=$3; shift 3; [ "${1:-}" = "--" ] && shift
BIN=${BIN:-target/release/synth-city} DATA=${DATA:-../shared/data} HOLDOUT=${HOLDOUT:-60}
WINDOWS=${WINDOWS:-100} SEED=${SEED:-2} PATHS=${PATHS:-500} ANCHORS=${ANCHORS:-garch-tod-t}
BLEND=${BLEND:-}
OUT=${OUT:-runs/heldout}
tf=5m; [ "$prompt" = high ] && tf=1m
summary() { python3 -c '
import json,sys
d=json.load(sys.stdin); name=sys.argv[1]
for a,r in d["assets"].items():
    c=[x for x in d["competitions"] if a in x["assets"]][0]
    bands=" / ".join("%.3f"%b["ratio"] for b in c.get("by_volatility",[]))
    fb=len(r.get("fallbacks",[]))
    print("%-8s %-28s ratio %.4f  (%s)  windows %d  fallbacks %d" % (a,name,r["ratio"],bands,r["windows"],fb))
' "$1"; }
backtest() { "$BIN" score backtest --model "$1" --reference gbm --last-days "$HOLDOUT" \
    --windows "$WINDOWS" --seed "$SEED" --paths "$PATHS" --prompt "$prompt" \
    --data-dir "$DATA" --assets "$2" --json; }
IFS=, read -ra list <<<"$assets"
for a in "${list[@]}"; do
    dir="$OUT/$tag-$prompt-$a"
    start=$(date +%s)
    res=$("$BIN" experiment --asset "$a" --timeframe "$tf" --holdout-days "$HOLDOUT" \
        --data-dir "$DATA" --out "$dir" --json "$@")
    secs=$(( $(date +%s) - start ))
    ck=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["checkpoint"])' <<<"$res")
    dev=$(python3 -c 'import json,sys; d=json.load(sys.stdin); print("dev %.4f, epoch %s/%s" % (d["crps_ratio"], d["best_epoch"], d["epochs_run"]))' <<<"$res")
    backtest "$ck" "$a" | summary "$tag (${secs}s; $dev)"
    [ -n "$BLEND" ] && backtest "mix:$ck,$BLEND" "$a" | summary "mix:$tag,$BLEND"
    for m in ${ANCHORS//,/ }; do backtest "$m" "$a" | summary "$m"; done
done

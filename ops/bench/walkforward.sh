#!/usr/bin/env bash
# Walk-forward (rolling-origin) comparison for issue 15: for each fold, train a zoo model per
# asset on everything before the fold, then score it, the classical anchors and the reference
# GBM on prompt windows inside the fold, with today's scoring. Fold 0 is the last FOLD_DAYS of
# each file, fold 1 the FOLD_DAYS before it, and so on: no fold's model saw its own windows.
# Days are counted on the file's own clock, closures (nights, weekends) included but holes of
# more than 3 days in the data left out, so a fold of a patchy file still holds FOLD_DAYS of bars.
#
#   ops/bench/walkforward.sh TAG PROMPT ASSETS -- <experiment flags>
#   e.g. ops/bench/walkforward.sh rec low BTC,ETH,SOL -- --preset recommended --seed 1
#
# Env: BIN (target/release/synth-city), DATA (../shared/data), FOLDS (3), FOLD_DAYS (60),
# WINDOWS per fold and asset (50), SEED (2), PATHS (500), ANCHORS (garch-tod-t; comma-separated,
# or semicolon-separated when a name holds a comma: 'ewma-tod-t;mix:ewma-tod-t,garch-tod-t'), BLEND (empty;
# a model name: also score mix:<checkpoint>,BLEND), OUT (runs/walkforward), TRAIN (1; 0: score
# the ANCHORS only, on the same folds and windows, without training a model).
# Writes every backtest's JSON under OUT and prints, per asset and model, the ratio to the GBM
# pooled over the folds and per fold (each fold a sub-period of its own volatility), then the
# same per competition with the validator's asset coefficients.
set -euo pipefail
tag=$1 prompt=$2 assets=$3; shift 3; [ "${1:-}" = "--" ] && shift
BIN=${BIN:-target/release/synth-city} DATA=${DATA:-../shared/data} FOLDS=${FOLDS:-3}
FOLD_DAYS=${FOLD_DAYS:-60} WINDOWS=${WINDOWS:-50} SEED=${SEED:-2} PATHS=${PATHS:-500}
ANCHORS=${ANCHORS:-garch-tod-t} BLEND=${BLEND:-} OUT=${OUT:-runs/walkforward} TRAIN=${TRAIN:-1}
tf=5m; [ "$prompt" = high ] && tf=1m
sep=,; [[ $ANCHORS == *';'* ]] && sep=';'
IFS=$sep read -ra anchors <<<"$ANCHORS"
mkdir -p "$OUT"
backtest() { # MODEL ASSET LAST_DAYS SKIP_DAYS FILE
    "$BIN" score backtest --model "$1" --reference gbm --prompt "$prompt" --data-dir "$DATA" \
        --assets "$2" --windows "$WINDOWS" --seed "$SEED" --paths "$PATHS" \
        --last-days "$3" --skip-last-days "$4" --json >"$5"
}
# folds ASSET: one line per fold, "HOLDOUT_DAYS LAST_DAYS SKIP_DAYS" in calendar days from the
# file's last bar: the model trains on what is before HOLDOUT_DAYS, its windows start in the
# LAST_DAYS before the last SKIP_DAYS.
folds() {
    local info; info=$("$BIN" data info --data-dir "$DATA" --json)
    python3 - "$DATA" "$1" "$tf" "$FOLDS" "$FOLD_DAYS" "$info" <<'PY'
import json, os, sys
data, asset, tf, folds, fold_days = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
# the file the CLI reads for the asset at this timeframe (`data info` knows the stems)
bar = 300 if tf == "5m" else 60
files = [f["file"] for f in json.loads(sys.argv[6])["files"] if f["asset"] == asset and f["bar_seconds"] == bar]
if not files:
    sys.exit(f"{asset}: no {tf} file in {data}")
ts = []
with open(os.path.join(data, files[0])) as fh:
    next(fh)
    for line in fh:
        if line.strip():
            ts.append(int(float(line.split(",", 1)[0])))
if ts[0] > 10**11:  # milliseconds
    ts = [t // 1000 for t in ts]
end, hole, clock, bounds = ts[-1], 3 * 86400, 0, []
for i in range(len(ts) - 1, 0, -1):
    step = ts[i] - ts[i - 1]
    if step <= hole:
        clock += step
    if clock >= (len(bounds) + 1) * fold_days * 86400:
        bounds.append(ts[i - 1])
        if len(bounds) == folds:
            break
if len(bounds) < folds:
    sys.exit(f"{asset}: {files[0]} holds fewer than {folds} folds of {fold_days:g} days")
prev = end
for b in bounds:
    print("%.4f %.4f %.4f" % ((end - b) / 86400, (prev - b) / 86400, (end - prev) / 86400))
    prev = b
PY
}
IFS=, read -ra list <<<"$assets"
for a in "${list[@]}"; do
    f=0
    while read -r holdout last skip; do
        base="$OUT/$tag-$prompt-$a-f$f"
        if [ "$TRAIN" = 0 ]; then
            for m in "${anchors[@]}"; do backtest "$m" "$a" "$last" "$skip" "$base.$m.json"; done
            f=$((f + 1))
            continue
        fi
        start=$(date +%s)
        "$BIN" experiment --asset "$a" --timeframe "$tf" --data-dir "$DATA" --out "$base.ckpt" \
            --holdout-days "$holdout" --json "$@" >"$base.train.json"
        ck=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["checkpoint"])' "$base.train.json")
        echo "$a fold $f (windows from $last days before the last $skip): trained in $(( $(date +%s) - start )) s" >&2
        backtest "$ck" "$a" "$last" "$skip" "$base.model.json"
        [ -n "$BLEND" ] && backtest "mix:$ck,$BLEND" "$a" "$last" "$skip" "$base.mix.json"
        for m in "${anchors[@]}"; do backtest "$m" "$a" "$last" "$skip" "$base.$m.json"; done
        f=$((f + 1))
    done < <(folds "$a")
done
"$BIN" score constants >"$OUT/constants.json"
python3 - "$OUT" "$tag" "$prompt" "$FOLDS" "$assets" <<'EOF'
import glob, json, os, sys
out, tag, prompt, folds, assets = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5].split(",")
coef = json.load(open(os.path.join(out, "constants.json")))["asset_coefficients"]
rows = {}  # model -> asset -> fold -> (mean, ref mean, windows, competition)
for a in assets:
    for f in range(folds):
        prefix = f"{tag}-{prompt}-{a}-f{f}."
        for path in glob.glob(os.path.join(out, glob.escape(prefix) + "*.json")):
            model = os.path.basename(path)[len(prefix):-len(".json")]
            if model == "train":
                continue
            d = json.load(open(path))
            for name, r in d["assets"].items():
                comp = r.get("competition") or "-"
                rows.setdefault(model, {}).setdefault(name, {})[f] = (
                    r["mean_crps"], r["mean_reference_crps"], r["windows"], comp)
def ratio(cells):
    m = sum(c[0] * c[2] for c in cells); g = sum(c[1] * c[2] for c in cells)
    return m / g if g else float("nan")
print(f"# {tag}, {prompt} prompt, {folds} folds; ratio to the GBM, pooled and per fold (fold 0 newest)")
for model, per in sorted(rows.items()):
    for a, byf in sorted(per.items()):
        cells = [byf[f] for f in sorted(byf)]
        print("%-8s %-14s pooled %.4f  folds %s  windows %d" % (
            a, model, ratio(cells), " ".join("%.4f" % ratio([byf[f]]) for f in sorted(byf)),
            sum(c[2] for c in cells)))
print("# per competition (validator coefficients), pooled and per fold")
for model, per in sorted(rows.items()):
    comps = {}
    for a, byf in per.items():
        for f, c in byf.items():
            comps.setdefault(c[3], {}).setdefault(f, []).append((coef.get(a, 1.0), c))
    for comp, byf in sorted(comps.items()):
        def wr(items):
            m = sum(w * c[0] * c[2] for w, c in items); g = sum(w * c[1] * c[2] for w, c in items)
            return m / g if g else float("nan")
        every = [x for f in byf for x in byf[f]]
        print("%-12s %-14s pooled %.4f  folds %s" % (
            comp, model, wr(every), " ".join("%.4f" % wr(byf[f]) for f in sorted(byf))))
EOF

#!/usr/bin/env bash
# ops/bench/gpu-check.sh: issue 21's GPU numbers in one short run on a borrowed GPU machine
# (CUDA driver and PyTorch, no Rust toolchain, no network): candle on CUDA against candle on the
# CPU and against PyTorch on the same GPU, same models, and one short experiment on CUDA.
#
# Here (this machine):  ops/cuda-build.sh          # -> target/cuda/release/synth-city
# There (the device tool, carrying target/cuda/release/synth-city):
#   ops/bench/gpu-check.sh                        # writes $OUT/gpu-check.jsonl (or ./gpu-check.jsonl)
# env: BIN (target/cuda/release/synth-city), STEPS (50), PRESETS ("lstm_gbm baseline_gbm"),
#      PYTHON (python3), DATA (data/sample: real bars shipped in the repo).
#
# Each line of the output is one JSON result: `bench train` (synth-city, per device) and
# ops/bench/train_torch.py (PyTorch, per device), then the experiment's summary and its wall
# time. Every command is bounded by `timeout` so one hang does not eat the loan; a failing
# command is recorded ({"failed": ...}) and the rest still run.
set -uo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-target/cuda/release/synth-city}
STEPS=${STEPS:-50}
PRESETS=${PRESETS:-"lstm_gbm baseline_gbm"}
PYTHON=${PYTHON:-python3}
DATA=${DATA:-data/sample}
OUTDIR=${OUT:-.}
RES=$OUTDIR/gpu-check.jsonl
: > "$RES"

# the CUDA 13 runtime libraries the binary links, from PyTorch's wheels when there is no toolkit
libs=$("$PYTHON" - <<'PY' 2>/dev/null
import glob, os, site
dirs = set()
for base in site.getsitepackages() + [site.getusersitepackages()]:
    for lib in glob.glob(os.path.join(base, "nvidia", "**", "lib*.so*"), recursive=True):
        dirs.add(os.path.dirname(lib))
print(":".join(sorted(dirs)))
PY
)
export LD_LIBRARY_PATH="${libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}:/usr/local/cuda/lib64"

note() { printf '%s\n' "$1" >> "$RES"; }
run() { # LABEL CMD... : append the command's last JSON line, or a failure record
  local label=$1; shift
  local out
  if out=$(timeout 240 "$@" 2>/tmp/gpu-check.err); then
    note "$(printf '%s\n' "$out" | grep '^{' | tail -1 | sed "s/^{/{\"run\":\"$label\",/")"
  else
    note "{\"run\":\"$label\",\"failed\":$?,\"stderr\":$(tail -c 600 /tmp/gpu-check.err | "$PYTHON" -c 'import json,sys; print(json.dumps(sys.stdin.read()))')}"
  fi
}

note "{\"run\":\"machine\",\"gpu\":\"$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)\",\"cpus\":$(nproc),\"date\":\"$(date -u +%FT%TZ)\"}"
"$BIN" --version > /dev/null 2>&1 || note "{\"run\":\"binary\",\"failed\":\"$BIN does not run here (LD_LIBRARY_PATH=$LD_LIBRARY_PATH)\"}"
for p in $PRESETS; do
  for dev in cuda cpu; do
    run "candle-$dev-$p" "$BIN" bench train --preset "$p" --data-dir "$DATA" --steps "$STEPS" --device "$dev" --json
    run "torch-$dev-$p" "$PYTHON" ops/bench/train_torch.py --preset "$p" --steps "$STEPS" --device "$dev" --json
  done
done
for dev in cuda cpu; do
  start=$(date +%s%N)
  run "experiment-$dev" "$BIN" experiment --preset recommended --asset BTC --timeframe 5m \
    --epochs 3 --data-dir "$DATA" --out "${TMPDIR:-/tmp}/gpu-check-exp-$dev" --device "$dev" --json
  note "{\"run\":\"experiment-$dev-wall\",\"seconds\":$(( ($(date +%s%N) - start) / 1000000 ))e-3}"
done
cat "$RES"

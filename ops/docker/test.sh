#!/usr/bin/env bash
# The docker suite: the fleet as separate hosts. Builds the images (ops/docker/build.sh, the
# debug binary that `cargo test` built), starts ops/docker/compose.yml under a project of its
# own on free host ports, and checks, across containers that share only Redis and the S3
# store:
#   - a pipeline run enqueued from the agents container trains on a trainer container (with
#     the sample bars), checks on the agents container (which has no bars: it reads the run's
#     dataset from the bucket), publishes to the bucket, and succeeds;
#   - the two trainer replicas registered, each on its own host;
#   - the miner container loads the published model (`mine --check --model latest` names it);
#     what it serves is each pair's champion (`--model champions`), GBM until one passes the gate
#     and the bridge answers on the host's loopback;
#   - Redis's append-only file is on and survives a restart of the redis container: the run is
#     still there afterwards.
# Everything it started is removed on exit (containers, network, volume).
#
# Usage: ops/docker/test.sh          (SKIP_BUILD=1 reuses the images)
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -n "${SKIP_BUILD:-}" ] || ops/docker/build.sh --profile debug

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export COMPOSE_PROJECT_NAME=sc-test-$$ BRIDGE_PORT=$(free_port) MINER_PORT=$(free_port)
BRIDGE_API_KEY=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
export BRIDGE_API_KEY MINER_ARGS="--hotkey-uri //Bob --allow-hotkeys 5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
bridge() { curl -sf -H "X-API-Key: $BRIDGE_API_KEY" "http://127.0.0.1:$BRIDGE_PORT$1"; }
if docker compose version >/dev/null 2>&1; then compose=(docker compose); else compose=(docker-compose); fi
dc() { "${compose[@]}" -f ops/docker/compose.yml "$@"; }
logs=target/docker/test-logs
cleanup() {
    status=$?
    if [ $status -ne 0 ]; then
        mkdir -p "$logs" && dc logs --no-color >"$logs/compose.log" 2>&1 || true
        echo "docker suite failed; the services' logs: $logs/compose.log (last lines below)" >&2
        tail -n 40 "$logs/compose.log" >&2 || true
    fi
    dc down -v --remove-orphans >/dev/null 2>&1 || true
    exit $status
}
trap cleanup EXIT
fail() { echo "docker suite: $*" >&2; exit 1; }
sc() { dc exec -T agents synth-city "$@"; }

echo "==> docker compose up ($COMPOSE_PROJECT_NAME; bridge 127.0.0.1:$BRIDGE_PORT, miner 127.0.0.1:$MINER_PORT)"
dc up -d --scale trainer=2 2>&1 | tail -n 3
for _ in $(seq 1 120); do
    bridge /health >/dev/null && break
    sleep 1
done
bridge /health >/dev/null || fail "the bridge never answered on 127.0.0.1:$BRIDGE_PORT"

echo "==> a pipeline run across the containers"
run=$(sc pipeline --enqueue-only --publish --max-experiments 2 --rounds 1 --agents builtin \
    --epochs 1 --steps-per-epoch 2 --d-model 8 --seq-len 16 --batch-size 2 --n-paths 4 \
    --eval-windows 2 --eval-paths 50 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["run_id"])')
state=
for _ in $(seq 1 600); do
    state=$(sc runs show "$run" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
    case "$state" in succeeded|failed|cancelled) break ;; esac
    sleep 1
done
record=$(sc runs show "$run" --json)
[ "$state" = succeeded ] || fail "run $run ended $state: $record"
python3 - "$record" <<'PY'
import json, sys
run = json.loads(sys.argv[1])
task = run["task"]
ds = task["options"].get("dataset") or ""
assert ds.startswith("ds-"), f"no dataset pinned: {task['options']}"
stages = [s["stage"] for s in task["stages"]]
assert stages[0] == "plan" and "check" in stages and stages[-1] == "publish", stages
ok = [r for r in task["results"] if r["status"] == "ok"]
assert ok and all(r["artifact"]["sha256"] and r["spec"]["data"]["dataset"] == ds for r in ok), ok
text = json.dumps(run)
assert "/srv/synth-city" not in text, "a container's path in the run record"
print(f"run {run['id']} succeeded on dataset {ds}: {stages}")
PY

echo "==> two trainer hosts registered"
workers=$(sc workers --json)
python3 - "$workers" <<'PY'
import json, sys
ws = json.loads(sys.argv[1])
# a worker's id is <hostname>-<pid>-<suffix>; a container's hostname is its own
trainer_roles = {"trainer", "train", "experiment", "train-one"}
hosts = {w["id"].rsplit("-", 2)[0] for w in ws if set(w["roles"]) <= trainer_roles}
assert len(hosts) >= 2, f"expected trainers on two hosts: {ws}"
print(f"trainers on {len(hosts)} hosts")
PY

echo "==> the miner container can load the published model; it serves the gated champions"
model=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["task"]["published"]["model_dir"])' "$record")
check=$(dc exec -T miner sh -c "synth-city mine --check --model latest --port 8092 $MINER_ARGS" 2>&1) ||
    fail "mine --check failed: $check"
case "$check" in *"${model#models/}"*|*"$run"*) ;; *) fail "mine --check does not name $model: $check" ;; esac
# the serving miner stays up (not restarting), and the bridge sees the run
dc ps miner | grep -q " Up " || fail "the miner container is not running: $(dc ps miner)"
bridge "/runs/$run" | grep -q succeeded || fail "the bridge does not show run $run"
bridge /health >/dev/null || fail "the bridge stopped answering"

echo "==> Redis restarts from its append-only file"
dc restart redis >/dev/null
for _ in $(seq 1 60); do sc runs show "$run" --json >/dev/null 2>&1 && break; sleep 1; done
sc runs show "$run" --json | grep -q '"succeeded"' || fail "the run is gone after a Redis restart"
echo "==> docker suite passed"

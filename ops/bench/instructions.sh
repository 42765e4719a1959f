#!/usr/bin/env bash
# ops/bench/instructions.sh: Redis's own instructions per job over one `bench queue` run, a
# measure that a busy machine does not move (much): redis-server runs under valgrind's
# callgrind (about 50x slower) on PORT; after a warm-up run (migrate, the library loaded), the
# counters are zeroed, `synth-city bench queue --jobs JOBS ARGS` runs, and the instructions
# Redis executed in user space (callgrind's Ir: Lua, commands, the protocol; not the kernel's
# socket work) are divided by JOBS, with each command's calls per job (INFO commandstats).
# What runs beside Redis in time (its cron, ~10 times a second) adds a few percent of noise,
# more for a slower run, and the measured run's own `migrate` (each bench run has a fresh
# prefix: FUNCTION LOAD of the library) a few thousand instructions per job. The worker batches more than it would against a fast Redis, so
# compare builds with it, not with the peer. Stops only the server it started.
#
#   ops/bench/instructions.sh [BIN] [-- bench queue args]
#   BIN defaults to target/release/synth-city; PORT to 16484; JOBS to 2000;
#   args to one job per enqueue call (--workers 1 --enqueue-batch 1 --producers 1).
set -euo pipefail
BIN=${1:-target/release/synth-city}
shift || true
[ "${1:-}" = "--" ] && shift
PORT=${PORT:-16484}
JOBS=${JOBS:-2000}
ARGS=("$@")
[ ${#ARGS[@]} -eq 0 ] && ARGS=(--workers 1 --enqueue-batch 1 --producers 1)
. "$(dirname "$0")/redis.sh"
bench_callgrind_redis_start "$PORT"
ir() { # instructions since the last zeroing
  callgrind_control -d "$VG_PID" >/dev/null
  grep -h '^summary:\|^totals:' "$(ls -t "$DIR"/cg.* | head -1)" | head -1 | awk '{print $2}'
}
"$BIN" --redis-url "$URL" --prefix ir bench queue --jobs 300 "${ARGS[@]}" --json >/dev/null
redis-cli -p "$PORT" config resetstat >/dev/null
callgrind_control -z "$VG_PID" >/dev/null
"$BIN" --redis-url "$URL" --prefix ir bench queue --jobs "$JOBS" "${ARGS[@]}" --json >"$DIR/report.json"
TOTAL=$(ir)
echo "# $(date -u +%FT%TZ) uptime:$(uptime | sed 's/.*load average/ load average/')"
echo "# bench (under valgrind): $(cat "$DIR/report.json")"
echo "instructions per job: $((TOTAL / JOBS))"
redis-cli -p "$PORT" info commandstats | tr -d '\r' | awk -F'[:,=]' -v jobs="$JOBS" '
  /^cmdstat_/ && $1 !~ /config/ { printf "%-22s %8.3f per job\n", substr($1, 9), $3 / jobs | "sort -k2 -n -r" }'

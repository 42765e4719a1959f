#!/usr/bin/env bash
# ops/bench/commandstats.sh: Redis commands per job over one `bench queue` run.
#
# Starts its own redis-server (--save '' --appendonly no) on PORT, resets INFO commandstats,
# runs `synth-city bench queue` with the given arguments, and prints each command's calls
# and microseconds per job (commands run inside Lua scripts are counted under their own
# names, and each script call as FCALL (or EVALSHA, for a binary from before the function
# library), whose microseconds include theirs and are left out of the total), sorted by
# calls, and the CPU per job of Redis and of the bench process beside the wall time per job.
# Stops only the server it started.
#
#   ops/bench/commandstats.sh [BIN] [-- bench queue args]
#   BIN defaults to target/release/synth-city; PORT to 16481; JOBS to 20000.
set -euo pipefail
BIN=${1:-target/release/synth-city}
shift || true
[ "${1:-}" = "--" ] && shift
PORT=${PORT:-16481}
JOBS=${JOBS:-20000}
ARGS=("$@")
[ ${#ARGS[@]} -eq 0 ] && ARGS=(--workers 1)
. "$(dirname "$0")/redis.sh"
bench_redis_start "$PORT"
# A first run migrates and warms the scripts; the measured run starts from reset stats.
"$BIN" --redis-url "$URL" --prefix cs bench queue --jobs 1000 "${ARGS[@]}" --json >/dev/null
redis-cli -p "$PORT" config resetstat >/dev/null
cpu() { redis-cli -p "$PORT" info cpu | tr -d '\r' | awk -F: '/^used_cpu_(user|sys):/ { s += $2 } END { print s }'; }
c0=$(cpu)
/usr/bin/time -f '%U %S' -o "$DIR/time" \
  "$BIN" --redis-url "$URL" --prefix cs bench queue --jobs "$JOBS" "${ARGS[@]}" --json >"$DIR/report.json"
c1=$(cpu)
redis-cli -p "$PORT" info commandstats | tr -d '\r' >"$DIR/stats"
echo "# $(date -u +%FT%TZ) uptime:$(uptime | sed 's/.*load average/ load average/')"
echo "# bench: $(cat "$DIR/report.json")"
# CPU per job against wall time per job: Redis's (INFO cpu, user + sys) and the bench
# process's (user + sys). Redis near the wall time is Redis-bound.
secs=$(sed -n 's/.*"seconds":\([0-9.]*\).*/\1/p' "$DIR/report.json")
awk -v c0="$c0" -v c1="$c1" -v jobs="$JOBS" -v secs="$secs" '
  { printf "# us per job: wall %.1f, redis cpu %.1f, bench process cpu %.1f\n", secs * 1e6 / jobs, (c1 - c0) * 1e6 / jobs, ($1 + $2) * 1e6 / jobs }' "$DIR/time"
awk -F'[:,=]' -v jobs="$JOBS" '
  /^cmdstat_/ { name = substr($1, 9); calls[name] = $3; usec[name] = $5; tc += $3; if (name != "evalsha" && name != "fcall") tu += $5 }
  END {
    printf "%-22s %12s %12s %12s\n", "command", "calls", "per job", "us per job"
    for (n in calls) printf "%-22s %12d %12.3f %12.2f\n", n, calls[n], calls[n] / jobs, usec[n] / jobs | "sort -k2 -n -r"
    close("sort -k2 -n -r")
    printf "%-22s %12d %12.3f %12.2f\n", "total", tc, tc / jobs, tu / jobs
  }' "$DIR/stats"

#!/usr/bin/env bash
# ops/bench/script-instructions.sh: Redis's own instructions per job of the queue's scripts,
# called directly in a steady worker's pattern (enqueue; finish_start finishing the last
# batch and starting the one read before; the plain XREADGROUP beside it): a measure of the
# scripts alone, which no client, batching or busy machine moves. redis-server runs under
# valgrind's callgrind on PORT; ops/bench/script_instructions.py (redis-py, in a venv under
# target/) drives it and zeroes and reads the counters around each command. LUA: the folder
# of Lua sources (default src/engine/lua; another checkout's for a before/after; its scripts
# must take this checkout's ARGV layout). Stops only the server it started.
#
#   ops/bench/script-instructions.sh [LUA] [ROUNDS] [B]
#   env: PORT (16485), KEEP (the retention argument; '86400000,0,86400000,-1,86400000'
#        drops completed records at finish), PROVEN ('1', default: finish_start gets a lease
#        proof, as a steady worker's calls do; '0': none, the pending list is read),
#        FRESH ('1', default: `enqueue` told its ids are new; '0': each looked up; 'none':
#        an older enqueue.lua, without that argument), KNOWN ('1', default: each finish sends
#        what its start answered, as the worker does; '0': none vouches, each reads its
#        record; 'none': an older finish layout, without that argument)
set -euo pipefail
cd "$(dirname "$0")/../.."
LUA=${1:-src/engine/lua}
PORT=${PORT:-16485}
VENV=target/bench-venv
[ -x "$VENV/bin/python" ] || { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q redis; }
. ops/bench/redis.sh
bench_callgrind_redis_start "$PORT"
echo "# $(date -u +%FT%TZ) redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'), lua $LUA, keep ${KEEP:-default}, proven ${PROVEN:-1}, fresh ${FRESH:-1}, known ${KNOWN:-1}"
"$VENV/bin/python" ops/bench/script_instructions.py "$PORT" "$VG_PID" "$DIR" "$LUA" "${2:-5}" "${3:-250}"

"""Redis's own instructions per job of the queue's scripts, called directly (no worker, no
bench process): the measure behind ops/bench/script-instructions.sh, which starts the
redis-server under callgrind and passes its pid and output folder.

Loads the four queue scripts of a folder of Lua sources (src/engine/lua by default; another
checkout's folder for a before/after) as one function library, as src/engine/scripts.rs
assembles it, then runs ROUNDS rounds of B jobs, in the steady state of a worker: each round
enqueues B jobs (one `enqueue` call), then one `finish_start` call finishes the jobs the
previous call started and starts the entries read last, and a plain XREADGROUP reads the
next B (the worker's read beside that call). Callgrind's counters are zeroed before and read
after each command; the median round per job is printed for each.

usage: script_instructions.py PORT CALLGRIND_PID CALLGRIND_DIR [LUA_DIR] [ROUNDS] [B]
env:   KEEP: the retention argument (default: completed records kept 24 h, no count limit;
       '86400000,0,86400000,-1,86400000' drops them at finish)
       PROVEN: '1' (default) sends `finish_start` a lease proof good for a century, as a
       steady worker's calls carry one (no pending-list read); '0' sends none (the read)
       FRESH: `enqueue`'s fresh argument: '1' (default: ids the producer drew, a first try,
       as the bench's producer sends them), '0' (each id looked up), 'none' (an older
       enqueue.lua, from before that argument)
       KNOWN: each finish's known argument: '1' (default: as the worker sends it, '1' where
       its start answered run, '0' where it answered run-and-read), '0' (every record read),
       'none' (an older finish layout, from before the known and bot arguments)
"""
import glob
import os
import random
import statistics
import subprocess
import sys

import redis

port, cg_pid, cg_dir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
lua = sys.argv[4] if len(sys.argv) > 4 else 'src/engine/lua'
rounds = int(sys.argv[5]) if len(sys.argv) > 5 else 5
B = int(sys.argv[6]) if len(sys.argv) > 6 else 250
keep = os.environ.get('KEEP', '86400000,-1,86400000,-1,86400000')
owned_until = '4102444800000' if os.environ.get('PROVEN', '1') == '1' else '0'
fresh = os.environ.get('FRESH', '1')
known = os.environ.get('KNOWN', '1')

r = redis.Redis(port=port, decode_responses=True)
r.flushall()
r.function_flush()
read = lambda name: open(os.path.join(lua, name + '.lua')).read()
src = "#!lua name=sc_cost\nlocal ARGV = {''}\n" + '\n'.join(
    read(n) for n in ['common', 'start_batch', 'finish_batch']) + '\n'
for n in ['enqueue', 'finish_start']:
    src += ("redis.register_function{function_name = 'cost_%s', callback = function(KEYS, ARGV)\n"
            "set_prefix(ARGV[1])\n%s\nend}\n" % (n, read(n)))
r.function_load(src, replace=True)
prefix = 'cost'
stream = '{%s}:q:noop' % prefix
r.xgroup_create(stream, 'workers', id='0', mkstream=True)


def instructions(call):
    """Runs `call`, returns (its reply, the instructions Redis executed meanwhile)."""
    subprocess.run(['callgrind_control', '-z', cg_pid], capture_output=True, check=True)
    reply = call()
    subprocess.run(['callgrind_control', '-d', cg_pid], capture_output=True, check=True)
    out = max(glob.glob(os.path.join(cg_dir, 'cg.*')), key=os.path.getmtime)
    for line in open(out):
        if line.startswith(('summary:', 'totals:')):
            return reply, int(line.split()[1])
    raise SystemExit('no totals in ' + out)


def job_id(env):
    return env.split('"id":"')[1][:26]


per = {'enqueue': [], 'finish_start': [], 'xreadgroup': []}
started, last_read, known_of = [], [], []
for rnd in range(rounds + 1):
    args = [prefix, '86400000'] + ([] if fresh == 'none' else [fresh])
    for _ in range(B):
        i = ''.join(random.choice('0123456789ABCDEFGHJKMNPQRSTVWXYZ') for _ in range(26))
        env = ('{"v":1,"id":"%s","type":"noop","payload":{},"attempt":0,"max_attempts":3,'
               '"timeout_ms":60000}' % i)
        args += ['noop', i, env, '', '0', '0', '']
    _, n = instructions(lambda: r.fcall('cost_enqueue', 0, *args))
    per['enqueue'].append(n / B)
    a = [prefix, keep, 'c1', '10', '0', owned_until, str(len(started))]
    for (sid, jid), k in zip(started, known_of):
        a += ['noop', sid, jid, 'completed', 'null', '1', '']
        if known != 'none':
            a += [k, '']
    if last_read:
        a += ['noop', str(len(last_read))]
        for sid, jid in last_read:
            a += [sid, jid, '3', '']
    reply, n = instructions(lambda: r.fcall('cost_finish_start', 0, *a))
    assert all(ok == 1 for ok in reply[1]), reply[1][:5]
    codes = [c for _, answers, *_ in reply[2] for c in answers[0::3]]
    assert all(c in (1, 3) for c in codes), codes[:6]
    if rnd > 0:  # the first call starts nothing and finishes nothing
        per['finish_start'].append(n / B)
    got, n = instructions(lambda: r.xreadgroup('workers', 'c1', {stream: '>'}, count=B))
    per['xreadgroup'].append(n / B)
    started = last_read
    # what the worker sends: known where the start answered 1 (3: the finish reads)
    known_of = [('1' if c == 1 else '0') if known == '1' else known for c in codes]
    last_read = [(sid, job_id(f['job'])) for sid, f in got[0][1]]
    assert len(last_read) == B

med = {k: statistics.median(v) for k, v in per.items()}
print('Redis instructions per job (median of %d rounds of %d jobs): %s; total %.0f' % (
    rounds, B, ', '.join('%s %.0f' % kv for kv in med.items()), sum(med.values())))

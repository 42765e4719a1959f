-- run_advance.lua: moves a run from one stage to the next, atomically with the
-- next stage's enqueue. ARGV: prefix, ttl ms, run id, expected stage, expected
-- attempt, new stage, new attempt, task json, new state ('' = running),
-- summary ('' = none), then next job type, job id, envelope ('' = none),
-- then the run's permit lease in ms. Handing over to the next stage renews
-- the run's `pipeline` permit for a whole lease, so the next stage job has all
-- of it to be picked up (run_keepalive.lua extends it while the job waits);
-- finishing the run frees the permit.
-- Only the stage job the run is waiting for may advance it: a stale or
-- re-delivered job finds the run elsewhere and changes nothing (0); a
-- cancelled or finished run is never advanced (-1). The next job's id is
-- derived from (run, stage, attempt), so even a replay cannot duplicate it.
local ttl, run_id = tonumber(ARGV[2]), ARGV[3]
local rk = key('run', run_id)
local f = redis.call('HMGET', rk, 'stage', 'attempt', 'state', 'bot')
if not f[1] then return 0 end
if f[3] == 'cancelled' or f[3] == 'succeeded' or f[3] == 'failed' then return -1 end
if f[1] ~= ARGV[4] or f[2] ~= ARGV[5] then return 0 end
local now = now_ms()
local state = ARGV[9]
if state == '' then state = 'running' end
redis.call('HSET', rk, 'stage', ARGV[6], 'attempt', ARGV[7], 'task', ARGV[8], 'state', state,
           'updated_at', now)
if ARGV[10] ~= '' then
  redis.call('HSET', rk, 'summary', ARGV[10], 'finished_at', now)
end
if ARGV[9] ~= '' then
  -- a finished run gives its permit (and any place in line) back here, in the
  -- same step, whoever finishes it: its last stage or the engine's keeper
  redis.call('ZREM', key('sem', 'pipeline', 'queue'), run_id)
  redis.call('ZREM', key('sem', 'pipeline', 'qexp'), run_id)
  if redis.call('ZREM', key('sem', 'pipeline', 'holders'), run_id) == 1 then
    redis.call('HDEL', key('sem', 'pipeline', 'fences'), run_id)
    emit(now, 'permit_released', 'semaphore', run_id, {'name', 'pipeline'})
  end
end
if ARGV[11] ~= '' then
  redis.call('HSET', rk, 'job', ARGV[12])
  enqueue_one(now, ARGV[11], ARGV[12], ARGV[13], '', now, ttl, f[4] or '')
  local hk = key('sem', 'pipeline', 'holders')
  local exp = redis.call('ZSCORE', hk, run_id)
  if exp and tonumber(exp) > now then
    redis.call('ZADD', hk, 'XX', now + tonumber(ARGV[14]), run_id)
  end
end
emit(now, 'run_' .. state, 'run', run_id, {'stage', ARGV[6], 'attempt', ARGV[7]})
return 1

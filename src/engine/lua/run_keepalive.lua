-- run_keepalive.lua: the engine's side of a run's `pipeline` permit between
-- stages. ARGV: prefix, lease ms.
-- For every permit holder whose lease still runs and whose run is live, it
-- looks at the run's current stage job. While that job is waiting, delayed,
-- active or waiting for its children (a train stage's experiments), the lease is extended to a whole lease from now: a stage job that
-- waits longer than a lease in a busy stream keeps its run's permit and place.
-- A run whose current job is dead, cancelled, finished without advancing the
-- run, or gone can never advance: it is returned for the caller to fail (the
-- permit lapses by itself if nobody does).
-- Returns a flat list: run id, job id, job state ('missing' when gone), error.
local hk = key('sem', 'pipeline', 'holders')
local now = now_ms()
local lease = tonumber(ARGV[2])
local out = {}
for _, run_id in ipairs(redis.call('ZRANGEBYSCORE', hk, '(' .. now, '+inf')) do
  local f = redis.call('HMGET', key('run', run_id), 'state', 'job')
  if f[1] == 'queued' or f[1] == 'running' then
    local job = f[2] or ''
    local j = redis.call('HMGET', key('job', job), 'state', 'error')
    local js = j[1]
    if js == 'waiting' or js == 'delayed' or js == 'active' or js == 'waiting-children' then
      local exp = tonumber(redis.call('ZSCORE', hk, run_id))
      if exp < now + lease then
        redis.call('ZADD', hk, 'XX', now + lease, run_id)
      end
    else
      out[#out + 1] = run_id
      out[#out + 1] = job
      out[#out + 1] = js or 'missing'
      out[#out + 1] = j[2] or ''
    end
  end
end
return out

-- run_cancel.lua: cancels a run that has not finished. ARGV: prefix, run id.
-- Returns the state before (or 'missing'); the caller then cancels the
-- current stage job, whose handler stops and releases the run's permit.
local rk = key('run', ARGV[2])
local f = redis.call('HMGET', rk, 'state', 'job')
if not f[1] then return {'missing', ''} end
if f[1] == 'succeeded' or f[1] == 'failed' or f[1] == 'cancelled' then return {f[1], ''} end
local now = now_ms()
redis.call('HSET', rk, 'state', 'cancelled', 'finished_at', now, 'updated_at', now)
emit(now, 'run_cancelled', 'run', ARGV[2])
return {f[1], f[2] or ''}

-- run_cancel.lua: cancels a run that has not finished. ARGV: prefix, run id.
-- Returns the state before (or 'missing'); the caller then cancels the
-- current stage job (cancel.lua: a train job waiting for its children
-- cancels them too). The run's `pipeline` permit (and its place in line) go
-- back here, at once: a stage job cancelled while it waits in its stream never
-- runs a handler that could release them.
local rk = key('run', ARGV[2])
local f = redis.call('HMGET', rk, 'state', 'job')
if not f[1] then return {'missing', ''} end
if f[1] == 'succeeded' or f[1] == 'failed' or f[1] == 'cancelled' then return {f[1], ''} end
local now = now_ms()
redis.call('HSET', rk, 'state', 'cancelled', 'finished_at', now, 'updated_at', now)
emit(now, 'run_cancelled', 'run', ARGV[2])
redis.call('ZREM', key('sem', 'pipeline', 'queue'), ARGV[2])
redis.call('ZREM', key('sem', 'pipeline', 'qexp'), ARGV[2])
if redis.call('ZREM', key('sem', 'pipeline', 'holders'), ARGV[2]) == 1 then
  redis.call('HDEL', key('sem', 'pipeline', 'fences'), ARGV[2])
  emit(now, 'permit_released', 'semaphore', ARGV[2], {'name', 'pipeline'})
end
return {f[1], f[2] or ''}

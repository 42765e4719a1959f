-- cancel.lua: cancels a job. ARGV: prefix, ttl_ms, job id.
-- waiting/delayed: removed at once. active: flagged; the worker's lease keeper
-- sees the flag and trips the handler's cancellation token.
-- Returns the outcome: cancelled | cancelling | missing | finished:<terminal state>.
local ttl, id = tonumber(ARGV[2]), ARGV[3]
local jk = key('job', id)
local f = redis.call('HMGET', jk, 'state', 'type', 'stream_id')
local state, jtype = f[1], f[2]
if not state then return 'missing' end
local now = now_ms()
if state == 'waiting' or state == 'delayed' then
  if state == 'waiting' and f[3] then
    redis.call('XDEL', key('q', jtype), f[3])
  end
  if redis.call('ZREM', key('delayed'), id) == 1 then
    redis.call('HINCRBY', key('stats', jtype), 'delayed_now', -1)
  end
  redis.call('HSET', jk, 'state', 'cancelled', 'cancel', 1, 'finished_at', now)
  redis.call('HDEL', jk, 'env')
  redis.call('PEXPIRE', jk, ttl)
  redis.call('HINCRBY', key('stats', jtype), 'cancelled', 1)
  emit(now, 'cancelled', jtype, id)
  return 'cancelled'
elseif state == 'active' then
  redis.call('HSET', jk, 'cancel', 1)
  emit(now, 'cancel_requested', jtype, id)
  return 'cancelling'
end
return 'finished:' .. state

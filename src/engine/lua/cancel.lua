-- cancel.lua: cancels a job. ARGV: prefix, ttl_ms, job id.
-- waiting/delayed: removed at once. active: flagged; the worker's lease keeper
-- sees the flag and trips the handler's cancellation token. waiting-children:
-- cancelled at once with each of its children still pending (recursively), so
-- cancelling a parent cancels its flow. A cancelled child's outcome goes on its
-- parent (child_done in common.lua).
-- Returns the outcome: cancelled | cancelling | missing | finished:<terminal state>.
local ttl = tonumber(ARGV[2])
local now = now_ms()

local function cancel_job(id)
  local jk = key('job', id)
  local f = redis.call('HMGET', jk, 'state', 'type', 'stream_id')
  local state, jtype = f[1], f[2]
  if not state then return 'missing' end
  if state == 'waiting' or state == 'delayed' or state == 'waiting-children' then
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
    if state == 'waiting-children' then
      for _, child in ipairs(redis.call('SMEMBERS', key('job', id, 'pending'))) do
        cancel_job(child)
      end
      expire_flow(id, ttl)
    end
    child_done(now, id, 'cancelled', '')
    return 'cancelled'
  elseif state == 'active' then
    redis.call('HSET', jk, 'cancel', 1)
    emit(now, 'cancel_requested', jtype, id)
    return 'cancelling'
  end
  return 'finished:' .. state
end

return cancel_job(ARGV[3])

-- finish.lua: records finished attempts. ARGV: prefix, ttl_ms, consumer, then 5 per
-- job: type, stream id, job id, state (completed|cancelled), result json.
-- A child job's outcome goes on its parent (child_done in common.lua).
-- Only the consumer that still owns the entry may finish it; a stale finisher
-- (its lease was lost and the job re-delivered) changes nothing.
-- Returns {now, ok_1, ok_2, ...} with ok = 1 recorded, 0 stale.
local ttl, consumer = tonumber(ARGV[2]), ARGV[3]
local now = now_ms()
local out = {now}
for i = 4, #ARGV, 5 do
  local jtype, sid, id, state, result = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local stream = key('q', jtype)
  if owns(stream, sid, consumer) then
    ackdel(stream, sid)
    local jk = key('job', id)
    redis.call('HSET', jk, 'state', state, 'result', result, 'finished_at', now)
    redis.call('HDEL', jk, 'env')
    redis.call('PEXPIRE', jk, ttl)
    redis.call('HINCRBY', key('stats', jtype), state, 1)
    emit(now, state, jtype, id)
    expire_flow(id, ttl)
    child_done(now, id, state, result)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out

-- start.lua: marks freshly delivered entries active. ARGV: prefix, type, consumer,
-- dlq reason for stalls, then 3 per entry: stream id, job id, max attempts.
-- An entry whose job is already `active` was stalled (its worker lost the
-- lease): that counts as a failed attempt, and past max attempts it is buried.
-- Returns per entry {code, now, attempt, starts} with code run|skip|dead.
local jtype, consumer = ARGV[2], ARGV[3]
local stream = key('q', jtype)
local now = now_ms()
local out = {}
for i = 4, #ARGV, 3 do
  local sid, id, max = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local jk = key('job', id)
  local f = redis.call('HMGET', jk, 'state', 'attempt')
  local state = f[1]
  if state == 'cancelled' or state == 'completed' or state == 'dead' then
    ackdel(stream, sid)
    out[#out + 1] = {'skip', now, 0, 0}
  else
    local attempt = tonumber(f[2] or '0')
    if state == 'active' then
      attempt = redis.call('HINCRBY', jk, 'attempt', 1)
      redis.call('HINCRBY', key('stats', jtype), 'stalled', 1)
      emit(now, 'stalled', jtype, id, {'attempt', attempt})
    end
    if attempt >= max then
      local env = redis.call('HGET', jk, 'env') or ''
      local reason = 'worker lost ' .. attempt .. ' times (lease expired)'
      ackdel(stream, sid)
      bury(now, jtype, id, env, reason, sid)
      redis.call('HSET', jk, 'state', 'dead', 'error', reason, 'finished_at', now)
      emit(now, 'dead', jtype, id, {'error', reason})
      child_done(now, id, 'dead', reason)
      out[#out + 1] = {'dead', now, attempt, 0}
    else
      if not state then
        redis.call('HSET', jk, 'id', id, 'type', jtype, 'attempt', attempt)
      end
      redis.call('HSET', jk, 'state', 'active', 'started_at', now, 'worker', consumer,
                 'stream_id', sid)
      local starts = redis.call('HINCRBY', jk, 'starts', 1)
      emit(now, 'started', jtype, id, {'worker', consumer})
      out[#out + 1] = {'run', now, attempt, starts}
    end
  end
end
return out

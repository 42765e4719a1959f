-- fail.lua: records a failed attempt. ARGV: prefix, ttl_ms, consumer, type, stream id,
-- job id, next envelope (attempt + 1), error, delay ms (-1 = dead-letter now),
-- counts ('1' = a failed attempt; '0' = deferred: try again later, no attempt used).
-- A dead child's outcome goes on its parent (child_done in common.lua).
-- A retry goes to the delayed set; promote.lua puts it back on the stream.
-- Returns 1 recorded, 0 stale (the entry is no longer ours), 2 dead-lettered because the
-- job's record is not a hash (overwritten; checked before any write).
local ttl, consumer, jtype = tonumber(ARGV[2]), ARGV[3], ARGV[4]
local sid, id, env, err, delay = ARGV[5], ARGV[6], ARGV[7], ARGV[8], tonumber(ARGV[9])
local counts = ARGV[10] ~= '0'
local stream = key('q', jtype)
if not owns(stream, sid, consumer) then return 0 end
local now = now_ms()
local jk = key('job', id)
local kind = redis.call('TYPE', jk)['ok']
if kind ~= 'hash' and kind ~= 'none' then
  local reason = '`' .. jk .. '` holds a ' .. kind .. ', not a hash (WRONGTYPE): the job\'s ' ..
                 'record was overwritten while it ran; last error: ' .. err
  ackdel(stream, sid)
  bury(now, jtype, id, env, reason, sid)
  emit(now, 'dead', jtype, id, {'error', reason})
  return 2
end
ackdel(stream, sid)
local attempt
if counts then
  redis.call('HINCRBY', key('stats', jtype), 'failed', 1)
  attempt = redis.call('HINCRBY', jk, 'attempt', 1)
else
  redis.call('HINCRBY', key('stats', jtype), 'deferred', 1)
  attempt = tonumber(redis.call('HGET', jk, 'attempt') or '0')
end
if delay >= 0 then
  local at = now + delay
  redis.call('HSET', jk, 'state', 'delayed', 'env', env, 'error', err, 'run_at', at)
  redis.call('HDEL', jk, 'stream_id')
  redis.call('ZADD', key('delayed'), at, id)
  redis.call('HINCRBY', key('stats', jtype), 'delayed_now', 1)
  if counts then
    redis.call('HINCRBY', key('stats', jtype), 'retried', 1)
    emit(now, 'retrying', jtype, id, {'error', err, 'attempt', attempt, 'run_at', at})
  else
    emit(now, 'deferred', jtype, id, {'reason', err, 'run_at', at})
  end
else
  bury(now, jtype, id, env, err, sid)
  redis.call('HSET', jk, 'state', 'dead', 'error', err, 'finished_at', now)
  redis.call('HDEL', jk, 'env')
  redis.call('PEXPIRE', jk, ttl)
  emit(now, 'dead', jtype, id, {'error', err})
  expire_flow(id, ttl)
  child_done(now, id, 'dead', err)
end
return 1

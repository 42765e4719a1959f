-- fail.lua: records a failed attempt. ARGV: prefix, retention (keep_policy in common.lua:
-- a dead record is dropped, or expires and is counted in its type's `kept:dead` index),
-- consumer, type, stream id,
-- job id, next envelope (attempt + 1), error, delay ms (-1 = dead-letter now),
-- counts ('1' = a failed attempt; '0' = deferred: try again later, no attempt used),
-- starts (the start this worker ran: the fencing token's second half), parent (the flow
-- parent the envelope names, '' = none).
-- A dead child's outcome goes on its parent (child_done in common.lua), found through the
-- envelope's parent when the record cannot name it (overwritten or deleted).
-- A retry goes to the delayed set; promote.lua puts it back on the stream.
-- The call leaves its fencing token (fence in common.lua) in the record's `failed_by`, or
-- in its dead letter when the record is not a hash, so the same call retried after Redis
-- applied it (its reply lost to a timeout) finds its own application and changes nothing:
-- no second count, no second move. The token stays until the job's next failure.
-- Returns 1 recorded, 0 stale (the entry is no longer ours), 2 dead-lettered because the
-- job's record is not a hash (overwritten; checked before any write; a retry of that call
-- answers 2 again), 3 already recorded by this very call (a retry of an applied call).
local K, consumer, jtype = keep_policy(ARGV[2]), ARGV[3], ARGV[4]
local sid, id, env, err, delay = ARGV[5], ARGV[6], ARGV[7], ARGV[8], tonumber(ARGV[9])
local counts = ARGV[10] ~= '0'
local starts, parent = ARGV[11], ARGV[12]
local stream = key('q', jtype)
local jk = key('job', id)
local by = fence(consumer, sid, starts)
local kind = type_of(jk)
if not owns(stream, sid, consumer) then
  if kind == 'hash' then
    if redis.call('HGET', jk, 'failed_by') == by then return 3 end
  elseif buried_by(id, by) then
    return 2
  end
  return 0
end
local now = now_ms()
if kind ~= 'hash' and kind ~= 'none' then
  local reason = '`' .. jk .. '` holds a ' .. kind .. ', not a hash (WRONGTYPE): the job\'s ' ..
                 'record was overwritten while it ran; last error: ' .. err
  ackdel(stream, sid)
  bury(now, jtype, id, env, reason, sid, by)
  emit(now, 'dead', jtype, id, {'error', reason})
  child_done(now, id, 'dead', reason, parent, jtype, consumer)
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
-- (id and type too: a record deleted while the job ran is whole again for promote.lua)
redis.call('HSET', jk, 'id', id, 'type', jtype, 'failed_by', by)
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
  bury(now, jtype, id, env, err, sid, by)
  redis.call('HSET', jk, 'state', 'dead', 'error', err, 'finished_at', now)
  redis.call('HDEL', jk, 'env')
  emit(now, 'dead', jtype, id, {'error', err})
  child_done(now, id, 'dead', err, parent, jtype, consumer)
  retire(now, 'dead', jtype, id, keep_for(K, 'dead', jtype), true)
  trim_kept(now, 'dead', jtype, keep_for(K, 'dead', jtype))
end
return 1

-- fan_out.lua: a running job hands its work to child jobs and waits for them
-- (BullMQ's flows), in one step: its entry leaves the stream, its record goes to
-- `waiting-children`, and each child is enqueued with `parent` set and added to
-- the job's `pending` set. ARGV: prefix, ttl ms, consumer, type, stream id, job
-- id, then 3 per child: type, id, envelope.
-- A child id seen before is not enqueued again: a live one is waited for, one
-- that already ended has its outcome recorded now. When no child is left to wait
-- for, the job goes straight back on its stream.
-- Only the consumer that still owns the entry may do this (0 = stale). A job
-- whose cancellation was requested is cancelled instead, and no child is made (2).
-- Returns 1 (waiting), 2 (cancelled), 3 (every child had ended: back on its stream).
local ttl, consumer, jtype, sid, id = tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local stream = key('q', jtype)
if not owns(stream, sid, consumer) then return 0 end
local now = now_ms()
ackdel(stream, sid)
local jk = key('job', id)
if redis.call('HGET', jk, 'cancel') == '1' then
  redis.call('HSET', jk, 'state', 'cancelled', 'finished_at', now)
  redis.call('HDEL', jk, 'env')
  redis.call('PEXPIRE', jk, ttl)
  expire_flow(id, ttl)
  redis.call('HINCRBY', key('stats', jtype), 'cancelled', 1)
  emit(now, 'cancelled', jtype, id)
  child_done(now, id, 'cancelled', '')
  return 2
end
local pending = key('job', id, 'pending')
local children = key('job', id, 'children')
local bot = redis.call('HGET', jk, 'bot') or ''
redis.call('HSET', jk, 'state', 'waiting-children')
redis.call('HDEL', jk, 'stream_id')
local n = 0
for i = 7, #ARGV, 3 do
  local ctype, cid, cenv = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  n = n + 1
  if redis.call('HEXISTS', children, cid) == 0 then
    local ck = key('job', cid)
    local c = redis.call('HMGET', ck, 'state', 'result', 'error', 'worker', 'started_at',
                         'finished_at')
    local cs = c[1]
    if not cs then
      enqueue_one(now, ctype, cid, cenv, '', now, ttl, bot)
      redis.call('HSET', ck, 'parent', id)
      redis.call('SADD', pending, cid)
    elseif cs == 'completed' or cs == 'dead' or cs == 'cancelled' then
      local detail = c[2] or ''
      if cs == 'dead' then detail = c[3] or '' end
      record_child(id, cid, cs, ctype, c[4], c[5], c[6], detail)
    else
      redis.call('HSET', ck, 'parent', id)
      redis.call('SADD', pending, cid)
    end
  end
end
redis.call('HINCRBY', key('stats', jtype), 'fanned_out', 1)
emit(now, 'waiting_children', jtype, id, {'children', n})
if redis.call('SCARD', pending) == 0 then
  wake_parent(now, id)
  return 3
end
return 1

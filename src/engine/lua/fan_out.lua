-- fan_out.lua: a running job hands its work to child jobs and waits for them
-- (BullMQ's flows), in one step: its entry leaves the stream, its record goes to
-- `waiting-children`, and each child is enqueued with `parent` set and added to
-- the job's `pending` set. ARGV: prefix, ttl ms, consumer, type, stream id, job
-- id, starts (the start this worker ran), parent (the flow parent of this job itself
-- that its envelope names, '' = none), its envelope, then 3 per child: type, id,
-- envelope (which names this job as its `parent`).
-- A child id seen before is not enqueued again: a live one is waited for, one
-- that already ended has its outcome recorded now, and one whose record is not a hash
-- (overwritten) counts as a dead child now. When no child is left to wait for, the
-- job goes straight back on its stream.
-- Every record's type is checked before the first write: a job whose own record is not a
-- hash is dead-lettered (4) and makes no child.
-- Only the consumer that still owns the entry may do this (0 = stale). A job
-- whose cancellation was requested is cancelled instead, and no child is made (2).
-- The call leaves its fencing token and answer in the record's `fanned_by` (or its dead
-- letter), so the same call retried after Redis applied it (its reply lost to a timeout)
-- answers what the applied one answered and changes nothing.
-- Returns 1 (waiting), 2 (cancelled), 3 (every child had ended: back on its stream),
-- 4 (dead-lettered: its record is not a hash).
local ttl, consumer, jtype, sid, id = tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local starts, parent, env = ARGV[7], ARGV[8], ARGV[9]
local stream = key('q', jtype)
local jk = key('job', id)
local by = fence(consumer, sid, starts)
local kind = type_of(jk)
if not owns(stream, sid, consumer) then
  if kind == 'hash' then
    local f = redis.call('HGET', jk, 'fanned_by')
    if f and string.sub(f, 1, #by + 1) == by .. '=' then
      return tonumber(string.sub(f, #by + 2))
    end
  elseif buried_by(id, by) then
    return 4
  end
  return 0
end
local now = now_ms()
if kind ~= 'hash' and kind ~= 'none' then
  local reason = '`' .. jk .. '` holds a ' .. kind .. ', not a hash (WRONGTYPE): the job\'s ' ..
                 'record was overwritten while it ran; its children were not made'
  ackdel(stream, sid)
  bury(now, jtype, id, env, reason, sid, by)
  emit(now, 'dead', jtype, id, {'error', reason})
  child_done(now, id, 'dead', reason, parent, jtype, consumer)
  return 4
end
-- Pass 1 (reads only): each child's record is a hash, absent, or poison.
local poison = {}
for i = 10, #ARGV, 3 do
  local ck = key('job', ARGV[i + 1])
  local ct = type_of(ck)
  if ct ~= 'hash' and ct ~= 'none' then
    poison[i] = '`' .. ck .. '` holds a ' .. ct .. ', not a hash (WRONGTYPE): the child\'s ' ..
                'record was overwritten; delete that key to make the child again'
  end
end
ackdel(stream, sid)
if kind == 'none' then
  -- deleted while it ran: whole again, so its children can wake it
  redis.call('HSET', jk, 'id', id, 'type', jtype, 'env', env)
  if parent ~= '' then redis.call('HSET', jk, 'parent', parent) end
end
if redis.call('HGET', jk, 'cancel') == '1' then
  redis.call('HSET', jk, 'state', 'cancelled', 'finished_at', now, 'fanned_by', by .. '=2')
  redis.call('HDEL', jk, 'env')
  redis.call('PEXPIRE', jk, ttl)
  expire_flow(id, ttl)
  redis.call('HINCRBY', key('stats', jtype), 'cancelled', 1)
  emit(now, 'cancelled', jtype, id)
  child_done(now, id, 'cancelled', '', parent, jtype, consumer)
  return 2
end
local pending = key('job', id, 'pending')
local children = key('job', id, 'children')
local bot = redis.call('HGET', jk, 'bot') or ''
redis.call('HSET', jk, 'state', 'waiting-children')
redis.call('HDEL', jk, 'stream_id')
local n = 0
for i = 10, #ARGV, 3 do
  local ctype, cid, cenv = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  n = n + 1
  if redis.call('HEXISTS', children, cid) == 0 then
    local ck = key('job', cid)
    if poison[i] then
      record_child(id, cid, 'dead', ctype, '', '', now, poison[i])
    else
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
end
redis.call('HINCRBY', key('stats', jtype), 'fanned_out', 1)
emit(now, 'waiting_children', jtype, id, {'children', n})
if redis.call('SCARD', pending) == 0 then
  redis.call('HSET', jk, 'fanned_by', by .. '=3')
  wake_parent(now, id)
  return 3
end
redis.call('HSET', jk, 'fanned_by', by .. '=1')
return 1

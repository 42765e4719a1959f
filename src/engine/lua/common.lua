-- common.lua: prepended to every queue script (see src/scripts.rs).
-- ARGV[1] is always the key prefix; every key shares the hash tag {prefix},
-- so a whole script touches one cluster slot. Time comes from the server.
local P = ARGV[1]
local GROUP = 'workers'
local EVENTS_MAXLEN = 10000
local DLQ_MAXLEN = 100000

local function key(...)
  return '{' .. P .. '}:' .. table.concat({...}, ':')
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Appends one event to the capped events stream.
local function emit(now, event, jtype, id, extra)
  local args = {key('events'), 'MAXLEN', '~', EVENTS_MAXLEN, '*',
                'event', event, 'type', jtype, 'id', id, 'at', now}
  if extra then
    for i = 1, #extra do args[#args + 1] = extra[i] end
  end
  redis.call('XADD', unpack(args))
end

-- True when `consumer` holds stream entry `sid` in the group's pending list.
local function owns(stream, sid, consumer)
  local p = redis.call('XPENDING', stream, GROUP, sid, sid, 1)
  return p[1] ~= nil and p[1][2] == consumer
end

-- Acknowledges and deletes an entry, so streams hold only live work.
local function ackdel(stream, sid)
  redis.call('XACK', stream, GROUP, sid)
  redis.call('XDEL', stream, sid)
end

-- Puts a job on its stream now, or in the delayed set until ready_at.
-- Returns {id, 1} when created, {existing id, 0} when the idempotency key or
-- the id was seen before.
local function enqueue_one(now, jtype, id, env, idem, ready_at, ttl_ms, bot)
  if idem ~= '' then
    -- Idempotency keys are scoped per bot: two bots never share a job by key.
    local ik = key('idem', jtype, bot, idem)
    local existing = redis.call('GET', ik)
    if existing then return {existing, 0} end
    redis.call('SET', ik, id, 'PX', ttl_ms)
  end
  local jk = key('job', id)
  if redis.call('EXISTS', jk) == 1 then return {id, 0} end
  -- Stamp the server's time into the envelope (a JSON object from serde).
  if not string.match(env, '"enqueued_at_ms":%d+}$') then
    env = string.sub(env, 1, -2) .. ',"enqueued_at_ms":' .. now .. '}'
  end
  if ready_at > now then
    redis.call('HSET', jk, 'id', id, 'type', jtype, 'state', 'delayed', 'env', env,
               'enqueued_at', now, 'run_at', ready_at, 'attempt', 0, 'bot', bot)
    redis.call('ZADD', key('delayed'), ready_at, id)
    redis.call('HINCRBY', key('stats', jtype), 'delayed_now', 1)
    emit(now, 'delayed', jtype, id)
  else
    local sid = redis.call('XADD', key('q', jtype), '*', 'job', env, 'at', now)
    redis.call('HSET', jk, 'id', id, 'type', jtype, 'state', 'waiting', 'env', env,
               'enqueued_at', now, 'stream_id', sid, 'attempt', 0, 'bot', bot)
    emit(now, 'enqueued', jtype, id)
  end
  redis.call('HINCRBY', key('stats', jtype), 'enqueued', 1)
  return {id, 1}
end

-- Writes a dead-letter entry.
local function bury(now, jtype, id, env, reason, sid)
  redis.call('XADD', key('dlq'), 'MAXLEN', '~', DLQ_MAXLEN, '*', 'id', id, 'type', jtype,
             'job', env, 'error', reason, 'stream_id', sid, 'at', now)
  redis.call('HINCRBY', key('stats', jtype), 'dead', 1)
end

-- Flows (BullMQ's parent and children): a child's job hash names its `parent`;
-- the parent's `job:<id>:pending` set holds its children without an outcome yet
-- and `job:<id>:children` (hash, child id -> JSON) each child's outcome: state,
-- type, worker, started_at and finished_at (server ms, as text), detail (the
-- result JSON when completed, the error when dead).

-- Writes one child's outcome on its parent.
local function record_child(parent, id, state, jtype, worker, started, finished, detail)
  redis.call('HSET', key('job', parent, 'children'), id, cjson.encode({
    state = state, type = jtype or '', worker = worker or '',
    started_at = tostring(started or ''), finished_at = tostring(finished or ''),
    detail = detail or ''}))
end

-- Puts a parent whose children all have an outcome back on its stream (the
-- handler runs again and reads them); a parent no longer waiting stays put.
local function wake_parent(now, parent)
  local pk = key('job', parent)
  local p = redis.call('HMGET', pk, 'state', 'type', 'env')
  if p[1] ~= 'waiting-children' or not p[3] then return end
  local sid = redis.call('XADD', key('q', p[2]), '*', 'job', p[3], 'at', now)
  redis.call('HSET', pk, 'state', 'waiting', 'stream_id', sid)
  emit(now, 'children_done', p[2], parent)
end

-- A job reached a final state (completed, dead or cancelled): if it is a child,
-- its outcome goes on its parent once (the SREM decides, so a child finished a
-- second time, after a reclaim or a dead-letter retry, counts nothing), and the
-- last child wakes the parent.
local function child_done(now, id, state, detail)
  local f = redis.call('HMGET', key('job', id), 'parent', 'type', 'worker', 'started_at')
  local parent = f[1]
  if not parent then return end
  local pending = key('job', parent, 'pending')
  if redis.call('SREM', pending, id) == 0 then return end
  record_child(parent, id, state, f[2], f[3], f[4], now, detail)
  if redis.call('SCARD', pending) == 0 then
    wake_parent(now, parent)
  end
end

-- A finished job's flow keys expire with its record.
local function expire_flow(id, ttl)
  redis.call('PEXPIRE', key('job', id, 'children'), ttl)
  redis.call('PEXPIRE', key('job', id, 'pending'), ttl)
end

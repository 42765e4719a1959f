-- common.lua: the top of the scripts' function library, and of each script run plainly
-- (see src/engine/scripts.rs). ARGV[1] is always the key prefix; every key shares the hash
-- tag {prefix}, so a whole script touches one cluster slot. Time comes from the server.
local GROUP = 'workers'
local EVENTS_MAXLEN = 10000
-- As text: a Lua number passed to redis.call is formatted (sprintf) on every call.
local EVENTS_MAXLEN_S = '10000'
local DLQ_MAXLEN = 100000

-- The key prefix with its hash tag, `{prefix}:`. Set from ARGV[1] below (a plain script),
-- and again by every library function before its body (the library loads once and its
-- functions share this top level).
local KP
local function set_prefix(p)
  KP = '{' .. p .. '}:'
end
set_prefix(ARGV[1])

-- `{prefix}:a:b:...`. Up to four parts without building a table (every job's scripts call
-- it several times).
local function key(a, b, c, d, ...)
  if b == nil then return KP .. a end
  if c == nil then return KP .. a .. ':' .. b end
  if d == nil then return KP .. a .. ':' .. b .. ':' .. c end
  if select('#', ...) == 0 then return KP .. a .. ':' .. b .. ':' .. c .. ':' .. d end
  return KP .. table.concat({a, b, c, d, ...}, ':')
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Appends one event to the capped events stream. `extra` (optional): more field-value pairs;
-- with none or one pair the XADD is sent as it is, without an argument table (a job's own
-- event on the enqueue path, measured).
local function emit(now, event, jtype, id, extra)
  if not extra then
    redis.call('XADD', key('events'), 'MAXLEN', '~', EVENTS_MAXLEN_S, '*',
               'event', event, 'type', jtype, 'id', id, 'at', now)
  elseif #extra == 2 then
    redis.call('XADD', key('events'), 'MAXLEN', '~', EVENTS_MAXLEN_S, '*',
               'event', event, 'type', jtype, 'id', id, 'at', now, extra[1], extra[2])
  else
    local args = {key('events'), 'MAXLEN', '~', EVENTS_MAXLEN_S, '*',
                  'event', event, 'type', jtype, 'id', id, 'at', now}
    for i = 1, #extra do args[#args + 1] = extra[i] end
    redis.call('XADD', unpack(args))
  end
end

-- Appends one event for several jobs of one type (a script's batch): `ids` and `bots` (each
-- job's bot, '' = none) as JSON arrays in step, instead of one entry per job. The bridge's
-- /events (src/bridge/sse.rs) hands them out one per job, as `emit` writes them. `extra`
-- (optional): more field-value pairs, shared by the jobs. The stream keeps about
-- EVENTS_MAXLEN jobs' events, not entries: an entry of n jobs trims it to EVENTS_MAXLEN / n
-- entries (10,000 entries of a 500-job enqueue batch each would be about 150 MB).
local function emit_batch(now, event, jtype, ids, bots, extra)
  if #ids == 0 then return end
  local cap = EVENTS_MAXLEN_S
  if #ids > 1 then cap = math.max(1, math.floor(EVENTS_MAXLEN / #ids)) end
  -- without an argument table where `extra` is none or one pair (emit's reason)
  if not extra then
    redis.call('XADD', key('events'), 'MAXLEN', '~', cap, '*', 'event', event, 'type', jtype,
               'ids', cjson.encode(ids), 'bots', cjson.encode(bots), 'at', now)
  elseif #extra == 2 then
    redis.call('XADD', key('events'), 'MAXLEN', '~', cap, '*', 'event', event, 'type', jtype,
               'ids', cjson.encode(ids), 'bots', cjson.encode(bots), 'at', now,
               extra[1], extra[2])
  else
    local args = {key('events'), 'MAXLEN', '~', cap, '*', 'event', event,
                  'type', jtype, 'ids', cjson.encode(ids), 'bots', cjson.encode(bots), 'at', now}
    for i = 1, #extra do args[#args + 1] = extra[i] end
    redis.call('XADD', unpack(args))
  end
end

-- Adds job `id` (of bot `bot`, false/nil = none) to `batch[event][jtype]` for emit_batches.
local function batch_event(batch, event, jtype, id, bot)
  local e = batch[event] or {}
  batch[event] = e
  local t = e[jtype] or {ids = {}, bots = {}}
  e[jtype] = t
  t.ids[#t.ids + 1] = id
  t.bots[#t.bots + 1] = bot or ''
end

-- One emit_batch per event and type collected by batch_event, each with `extra`.
local function emit_batches(now, batch, extra)
  for event, types in pairs(batch) do
    for jtype, t in pairs(types) do emit_batch(now, event, jtype, t.ids, t.bots, extra) end
  end
end

-- True when `consumer` holds stream entry `sid` in the group's pending list.
local function owns(stream, sid, consumer)
  local p = redis.call('XPENDING', stream, GROUP, sid, sid, 1)
  return p[1] ~= nil and p[1][2] == consumer
end

-- Which of the entries `sids` of `stream` `consumer` holds in the group's pending list:
-- sid -> its delivery count. One XPENDING for the whole batch (what `owns` answers per
-- entry), over the milliseconds from its lowest id's to its highest's (an id without its
-- sequence is its millisecond's first as XPENDING's start and its last as its end); the
-- consumer's pending list is bounded by its in-flight jobs, so the reply is too. An entry
-- missing from it was acked meanwhile or is held by another worker now.
-- Ids whose milliseconds have as many digits (every id since 2001) order as text by their
-- milliseconds, so the least and the greatest as text carry the least and the greatest
-- milliseconds: no number or substring per id (comparing ids as numbers, two pattern
-- captures per id and comparison, cost ~14k Redis instructions per job in a batch of 250
-- starts, measured under callgrind). Otherwise the range is every entry.
local function held_by(stream, consumer, sids)
  local held = {}
  if #sids == 0 then return held end
  local lo, hi = sids[1], sids[1]
  local p = string.find(lo, '-', 1, true)
  for i = 2, #sids do
    local s = sids[i]
    if string.find(s, '-', 1, true) ~= p then p = nil break end
    if s < lo then lo = s elseif s > hi then hi = s end
  end
  if p then lo, hi = string.sub(lo, 1, p - 1), string.sub(hi, 1, p - 1) else lo, hi = '-', '+' end
  for _, e in ipairs(redis.call('XPENDING', stream, GROUP, lo, hi, 1000000000, consumer)) do
    held[e[1]] = e[4]
  end
  return held
end

-- In place of held_by's answer, for entries the caller proved its own without reading the
-- pending list (finish_start.lua's `owned until`): every entry held, delivered once. A
-- marker that start_batch and finish_batch compare against (`held == ALL_HELD`), not a
-- table to index: its answer costs no lookup per entry, and the callers build no lists of
-- stream ids for it (together ~2k Redis instructions per job in batches of 250, measured).
-- (A metatable that answered every index cannot be made when the library loads: Redis
-- gives the library's top level no `setmetatable`.)
local ALL_HELD = {}

-- Whether a call's `owned until` (ARGV text, '0' = none) proves its entries still the
-- caller's at `now` (finish_start.lua says why); a retried call's never does.
local function proven(now, owned_until, retried)
  return not retried and now < tonumber(owned_until)
end

-- Acknowledges and deletes an entry, so streams hold only live work.
local function ackdel(stream, sid)
  redis.call('XACK', stream, GROUP, sid)
  redis.call('XDEL', stream, sid)
end

-- At most this many list items go into one command (Lua's unpack is bounded by its C stack).
local UNPACK_MAX = 1000

-- The commands below name their command literally: acl.rs reads the scripts' commands from
-- their text to grant each role what its scripts call.

-- Whether stream id `a` comes before `b`. Ids whose parts have as many digits compare as
-- text; others by their parts' numbers.
local function id_before(a, b)
  local i = string.find(a, '-', 1, true)
  if #a == #b and string.byte(b, i) == 45 then return a < b end
  local j = string.find(b, '-', 1, true)
  local ma, mb = tonumber(string.sub(a, 1, i - 1)), tonumber(string.sub(b, 1, j - 1))
  if ma ~= mb then return ma < mb end
  return tonumber(string.sub(a, i + 1)) < tonumber(string.sub(b, j + 1))
end

-- ackdel for several entries of one stream: one XACK for them all (per UNPACK_MAX), instead
-- of one per entry (each `redis.call` costs Redis 1-2.5 us besides the command's own work),
-- then their deletion, mostly by one trim. Every entry before the group's oldest pending one
-- has been delivered (the group reads in id order from 0, and a pending entry was
-- delivered) and is pending no more, so it was acked: XTRIM MINID removes those, a few
-- hundred instructions each, where XDEL scans an entry's stream node to find it (~12k Redis
-- instructions per entry in batches of 250, measured). What is left of `sids` (newer than
-- a pending entry: finished out of order; or all of them when nothing is pending, as
-- undelivered entries may follow) goes by XDEL as before.
local function ackdel_all(stream, sids)
  for i = 1, #sids, UNPACK_MAX do
    local j = math.min(i + UNPACK_MAX - 1, #sids)
    redis.call('XACK', stream, GROUP, unpack(sids, i, j))
  end
  local oldest = redis.call('XPENDING', stream, GROUP)[2]
  if oldest then
    redis.call('XTRIM', stream, 'MINID', oldest)
    local rest = {}
    for _, sid in ipairs(sids) do
      if not id_before(sid, oldest) then rest[#rest + 1] = sid end
    end
    sids = rest
  end
  for i = 1, #sids, UNPACK_MAX do
    local j = math.min(i + UNPACK_MAX - 1, #sids)
    redis.call('XDEL', stream, unpack(sids, i, j))
  end
end

-- UNLINKs `keys`, one command per UNPACK_MAX of them.
local function unlink_all(keys)
  for i = 1, #keys, UNPACK_MAX do
    redis.call('UNLINK', unpack(keys, i, math.min(i + UNPACK_MAX - 1, #keys)))
  end
end

-- Puts a job on its stream now, or in the delayed set until ready_at.
-- Returns {id, 1} when created, {existing id, 0} when the idempotency key or
-- the id was seen before. `counts` (optional): a table type -> jobs created that the caller
-- adds to the stats once per batch (`add_counts`) instead of one HINCRBY per job; `events`
-- (optional): the batch's events (batch_event), written once per batch (emit_batches)
-- instead of one per job; `fresh` (optional): the caller vouches that no record can have
-- this id (enqueue.lua says when), so it is not looked up.
local function enqueue_one(now, jtype, id, env, idem, ready_at, ttl_ms, bot, counts, events,
                           fresh)
  if idem ~= '' then
    -- Idempotency keys are scoped per bot: two bots never share a job by key.
    local ik = key('idem', jtype, bot, idem)
    local existing = redis.call('GET', ik)
    if existing then return {existing, 0} end
    redis.call('SET', ik, id, 'PX', ttl_ms)
  end
  local jk = key('job', id)
  if not fresh and redis.call('EXISTS', jk) == 1 then return {id, 0} end
  -- `now` as text once: a number is formatted (sprintf) wherever it is used as text.
  local nows = tostring(now)
  -- Stamp the server's time into the envelope (a JSON object from serde); only its tail can
  -- hold the stamp (the last field: `"enqueued_at_ms":<digits>}`), so only the tail is
  -- searched, for the plain text first (a pattern search of every envelope cost more than the
  -- rest of the stamp).
  local at = string.find(env, '"enqueued_at_ms":', -40, true)
  if not (at and string.find(env, '^%d+}$', at + 17)) then
    env = string.sub(env, 1, -2) .. ',"enqueued_at_ms":' .. nows .. '}'
  end
  if ready_at > now then
    redis.call('HSET', jk, 'id', id, 'type', jtype, 'state', 'delayed', 'env', env,
               'enqueued_at', nows, 'run_at', ready_at, 'attempt', '0', 'bot', bot)
    redis.call('ZADD', key('delayed'), ready_at, id)
    redis.call('HINCRBY', key('stats', jtype), 'delayed_now', '1')
    if events then batch_event(events, 'delayed', jtype, id, bot)
    else emit(nows, 'delayed', jtype, id, {'bot', bot}) end
  else
    local sid = redis.call('XADD', key('q', jtype), '*', 'job', env, 'at', nows)
    -- No `attempt` field until one is counted (absent reads as 0 everywhere: start_batch,
    -- HINCRBY, `Queue::status`), and `bot` only when there is one: each field an argument
    -- less to convert and store (~2k Redis instructions per job, measured).
    if bot == '' then
      redis.call('HSET', jk, 'id', id, 'type', jtype, 'state', 'waiting', 'env', env,
                 'enqueued_at', nows, 'stream_id', sid)
    else
      redis.call('HSET', jk, 'id', id, 'type', jtype, 'state', 'waiting', 'env', env,
                 'enqueued_at', nows, 'stream_id', sid, 'bot', bot)
    end
    if events then batch_event(events, 'enqueued', jtype, id, bot)
    else emit(nows, 'enqueued', jtype, id, {'bot', bot}) end
  end
  if counts then
    counts[jtype] = (counts[jtype] or 0) + 1
  else
    redis.call('HINCRBY', key('stats', jtype), 'enqueued', '1')
  end
  return {id, 1}
end

-- Adds a batch's counts (type -> n) to field `field` of each type's stats: one HINCRBY per
-- type per call rather than per job.
local function add_counts(counts, field)
  for jtype, n in pairs(counts) do
    redis.call('HINCRBY', key('stats', jtype), field, n)
  end
end

-- Writes a dead-letter entry. `by` (optional) is the fencing token of the worker call
-- that wrote it (see fence), so that call, retried, finds it (buried_by). A job of unknown
-- type ('') is counted in no type's stats.
local function bury(now, jtype, id, env, reason, sid, by)
  redis.call('XADD', key('dlq'), 'MAXLEN', '~', DLQ_MAXLEN, '*', 'id', id, 'type', jtype,
             'job', env, 'error', reason, 'stream_id', sid, 'at', now, 'by', by or '')
  if jtype ~= '' then
    redis.call('HINCRBY', key('stats', jtype), 'dead', 1)
  end
end

-- A worker's call that moves a job (finish, fail, fan_out) may be applied by Redis while
-- its reply is lost (a timeout); the worker then sends the same call again, which no longer
-- owns the entry. Such a call identifies itself by its fencing token: the consumer, the
-- stream entry and the start it ran (`starts`, set by start.lua), unique to one start of
-- one job by one worker. It leaves the token where its retry looks: in the job's record
-- (finish: `worker`/`stream_id`/`starts`; fail: `failed_by`; fan_out: `fanned_by`), or,
-- when the record is not a hash, in its dead letter's `by` field.
local function fence(consumer, sid, starts)
  return consumer .. '/' .. sid .. '/' .. starts
end

-- How far back buried_by looks: a retry comes within seconds of the call it repeats.
local BURIED_BY_SCAN = 500

-- True when one of the newest dead letters is job `id`'s, written by the call `token`.
local function buried_by(id, token)
  if redis.call('TYPE', key('dlq'))['ok'] ~= 'stream' then return false end
  for _, e in ipairs(redis.call('XREVRANGE', key('dlq'), '+', '-', 'COUNT', BURIED_BY_SCAN)) do
    local f, lid, lby = e[2], nil, nil
    for j = 1, #f, 2 do
      if f[j] == 'id' then lid = f[j + 1] elseif f[j] == 'by' then lby = f[j + 1] end
    end
    if lid == id and lby == token then return true end
  end
  return false
end

-- The type of `k` (string, hash, stream, set, none, ...).
local function type_of(k)
  return redis.call('TYPE', k)['ok']
end

-- True when `k` holds a `t` or nothing: a write of that type cannot fail with WRONGTYPE.
local function holds(k, t)
  local kt = type_of(k)
  return kt == t or kt == 'none'
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
-- handler runs again and reads them); a parent no longer waiting stays put, and so does
-- one whose record is not a hash (overwritten: its envelope is lost with it).
local function wake_parent(now, parent)
  local pk = key('job', parent)
  if type_of(pk) ~= 'hash' then return end
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
-- The parent is the one the child's record names; `parent` (optional: the parent its
-- envelope names, '' = none) stands in when the record cannot name one: it was
-- overwritten by a non-hash (poison) or deleted (and recreated without it). `jtype` and
-- `worker` (optional) likewise stand in for the record's. A parent whose pending set does
-- not hold this child counts nothing, so the envelope's word alone moves no parent.
-- `f` (optional) is the record's {parent, type, worker, started_at} as the caller already
-- read them (HMGET, its first four fields) from a record known to be a hash or absent; without
-- it they are read here.
-- Never fails on a key of the wrong type: it is called after other writes.
local function child_done(now, id, state, detail, parent, jtype, worker, f)
  if not f then
    f = {}
    local jk = key('job', id)
    if type_of(jk) == 'hash' then
      f = redis.call('HMGET', jk, 'parent', 'type', 'worker', 'started_at')
    end
  end
  parent = f[1] or parent
  if not parent or parent == '' then return end
  local pending = key('job', parent, 'pending')
  if type_of(pending) ~= 'set' or not holds(key('job', parent, 'children'), 'hash') then
    return
  end
  if redis.call('SREM', pending, id) == 0 then return end
  record_child(parent, id, state, f[2] or jtype, f[3] or worker, f[4], now, detail)
  if redis.call('SCARD', pending) == 0 then
    wake_parent(now, parent)
  end
end

-- A finished job's flow keys expire with its record.
local function expire_flow(id, ttl)
  redis.call('PEXPIRE', key('job', id, 'children'), ttl)
  redis.call('PEXPIRE', key('job', id, 'pending'), ttl)
end

-- Finished-record retention (config.rs, `Keep`; `Queue::retention_arg`): the finishing
-- scripts' ARGV[2] is `ttl ms,completed count,completed age ms,failed count,failed age ms`
-- (count -1: no limit), then `;` and the job types whose records are read after they finish
-- (comma-separated; those keep `ttl`), or a plain ttl in ms (every record kept for it).
-- Cancelled records keep `ttl`. The ms figures are kept as text too (`ttl_s`, `age_s`): the
-- form in which they are passed to PEXPIRE per job (a Lua number passed to redis.call is
-- formatted by sprintf on every call).
local function parse_keep_policy(arg)
  local t, cc, ca, fc, fa, rest =
    string.match(arg, '^(%d+),(%-?%d+),(%d+),(%-?%d+),(%d+);?(.*)$')
  if not t then
    local ttl = tonumber(arg)
    local keep = {count = -1, age = ttl, age_s = arg}
    return {ttl = ttl, ttl_s = arg, completed = keep, dead = keep, exempt = {},
            exempt_keep = keep}
  end
  local exempt = {}
  for jtype in string.gmatch(rest, '[^,]+') do exempt[jtype] = true end
  return {ttl = tonumber(t), ttl_s = t,
          completed = {count = tonumber(cc), age = tonumber(ca), age_s = ca},
          dead = {count = tonumber(fc), age = tonumber(fa), age_s = fa}, exempt = exempt,
          exempt_keep = {count = -1, age = tonumber(t), age_s = t}}
end

-- keep_policy's answers by argument. The library's functions share this table from call to
-- call (a plain script starts with it empty), so a worker's calls do not parse the same
-- text each time (the parse cost about as much Redis time as an HSET, measured). A policy
-- is a pure function of its text and its callers only read it. Emptied when it holds
-- KEEP_CACHE_MAX texts (a fleet has a few).
local KEEP_CACHE_MAX = 32
local keep_cache, keep_cached = {}, 0
local function keep_policy(arg)
  local K = keep_cache[arg]
  if K then return K end
  K = parse_keep_policy(arg)
  if keep_cached >= KEEP_CACHE_MAX then keep_cache, keep_cached = {}, 0 end
  keep_cache[arg] = K
  keep_cached = keep_cached + 1
  return K
end

-- What policy `K` keeps of a `class` (completed, dead) record of `jtype`.
local function keep_for(K, class, jtype)
  if K.exempt[jtype] then return K.exempt_keep end
  return K[class]
end

-- Whether `keep` drops a record as soon as it finishes (count 0 or age 0).
local function drops(keep)
  return keep.count == 0 or keep.age == 0
end

-- The keys of a job's record and its flow keys, added to `keys`.
local function record_keys(id, keys)
  keys[#keys + 1] = key('job', id)
  keys[#keys + 1] = key('job', id, 'children')
  keys[#keys + 1] = key('job', id, 'pending')
  return keys
end

-- Deletes a job's record and its flow keys.
local function drop_record(id)
  redis.call('UNLINK', unpack(record_keys(id, {})))
end

-- Lets a finished record (already written, state `class`: completed or dead) go as `keep`
-- says: dropped now, or expiring after its age (its flow keys with it, when `flow`), and,
-- under a count, indexed by finish time in `kept:<class>:<type>` for trim_kept.
local function retire(now, class, jtype, id, keep, flow)
  if drops(keep) then
    drop_record(id)
    return
  end
  redis.call('PEXPIRE', key('job', id), keep.age_s)
  if flow then expire_flow(id, keep.age_s) end
  if keep.count > 0 then
    redis.call('ZADD', key('kept', class, jtype), now, id)
  end
end

-- Once per call and type after retire: forgets index entries whose records expired and
-- drops the oldest records beyond the count (requeue.lua takes a retried job out first).
local function trim_kept(now, class, jtype, keep)
  if keep.count <= 0 or keep.age == 0 then return end
  local idx = key('kept', class, jtype)
  redis.call('ZREMRANGEBYSCORE', idx, '-inf', now - keep.age)
  local over = redis.call('ZCARD', idx) - keep.count
  if over > 0 then
    local popped, keys = redis.call('ZPOPMIN', idx, over), {}
    for j = 1, #popped, 2 do record_keys(popped[j], keys) end
    unlink_all(keys)
  end
  redis.call('PEXPIRE', idx, keep.age)
end

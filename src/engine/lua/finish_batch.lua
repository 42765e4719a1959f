-- finish_batch.lua: finish_batch, the body of finish.lua as a function, so
-- finish_start.lua records finishes with the same code. Follows common.lua in the function
-- library and, run as plain scripts, in the scripts that finish jobs
-- (src/engine/scripts.rs, `prelude!(Worker)`).

-- How many values each finish takes (finish.lua's header names them).
local FINISH_ARGS = 9

-- Adds the stream id of each finish in `A[first..last]` (FINISH_ARGS values each, as
-- finish_batch reads them) to `by`, a table type -> stream ids; returns `by`.
local function finish_sids(A, first, last, by)
  for i = first, last, FINISH_ARGS do
    local s = by[A[i]] or {}
    s[#s + 1] = A[i + 1]
    by[A[i]] = s
  end
  return by
end

-- Records finished attempts (finish.lua's header says how); `A` holds FINISH_ARGS values per
-- job from index `first` to `last`: type, stream id, job id, state (completed|cancelled),
-- result json, starts, parent, known, bot. `held` (optional): type -> which entries of its
-- stream the consumer holds (held_by), read by the caller for these entries and more, or
-- ALL_HELD (the caller proved them all its own); without it read here.
-- Returns {ok_1, ok_2, ...} (the codes of finish.lua's reply, without `now`).
local function finish_batch(now, K, consumer, A, first, last, held)
  -- As text: a Lua number passed to redis.call is formatted (sprintf) on every call.
  local ttl, nows = K.ttl_s, tostring(now)
  -- Pass 1, reads only: each record's fields that child_done needs (the first four),
  -- `fanned_by`, which fan_out.lua leaves on a job that fanned out, and `bot` (for the
  -- event). pcall: a record that is not a hash answers WRONGTYPE (an error table) instead
  -- of raising; its type is read for the dead letter.
  -- A job without a parent needs less (finish.lua's `known` and `bot`): the worker sent its
  -- bot, and of the rest only whether the job has flow keys matters. One whose record is
  -- dropped reads just that (`type` and `fanned_by`: each field an HMGET reads costs Redis
  -- ~1k instructions, measured); a known one whose record is written is not read at all:
  -- the write itself (pass 2) finds a record that is not a hash, or none.
  local bad, fields, jks = {}, {}, {} -- jks: each record's key, made once
  local flows = {} -- a finish whose fields were not read: whether its job has flow keys
  for i = first, last, FINISH_ARGS do
    local jk = key('job', A[i + 2])
    jks[i] = jk
    local no_parent = A[i + 6] == ''
    if no_parent and A[i + 3] == 'completed' and drops(keep_for(K, 'completed', A[i])) then
      local f = redis.pcall('HMGET', jk, 'type', 'fanned_by')
      -- flow keys: the job fanned out, or the record was deleted under it (no type)
      if f.err then bad[i] = type_of(jk) else flows[i] = f[2] ~= false or f[1] == false end
    elseif not no_parent or A[i + 7] ~= '1' then
      local f = redis.pcall('HMGET', jk, 'parent', 'type', 'worker', 'started_at', 'fanned_by',
                            'bot')
      if f.err then bad[i] = type_of(jk) else fields[i] = f end
    end
  end
  -- Ownership for the whole batch: one XPENDING per stream (type) instead of one per job.
  if not held then
    held = finish_sids(A, first, last, {})
    for jtype, sids in pairs(held) do
      held[jtype] = held_by(key('q', jtype), consumer, sids)
    end
  end
  local out = {}
  local all = held == ALL_HELD
  -- Deferred to the end of the call, one command each for the batch (ackdel_all,
  -- unlink_all): the finished entries (type -> stream ids) and the dropped records' keys.
  -- Nothing in between reads them: the records were read in pass 1 (or written, for a
  -- known finish, before anything else of its job) and ownership by `held`.
  local acked, dropped = {}, {}
  local counts = {} -- state -> type -> jobs, added to the stats once per call
  local events = {} -- state -> type -> ids and bots: one event per state and type (emit_batch)
  for i = first, last, FINISH_ARGS do
    local jtype, sid, id, state, result = A[i], A[i + 1], A[i + 2], A[i + 3], A[i + 4]
    local starts, parent = A[i + 5], A[i + 6]
    local jk = jks[i]
    local f = fields[i] -- the record's fields, or nil: a known finish (or a bad record)
    if not all and not held[jtype][sid] then
      local g = {}
      if not bad[i] then
        g = redis.pcall('HMGET', jk, 'state', 'worker', 'stream_id', 'starts')
        if g.err then bad[i], g = type_of(jk), {} end
      end
      if g[1] == state and g[2] == consumer and g[3] == sid and g[4] == starts then
        out[#out + 1] = 2
      elseif not bad[i] and not g[1] and state == 'completed'
             and drops(keep_for(K, 'completed', jtype)) then
        -- no record, and completed ones are dropped at finish: this call's own finish (or
        -- another worker's, of the same job after a lost lease) was applied; nothing to do
        out[#out + 1] = 2
      elseif bad[i] and buried_by(id, fence(consumer, sid, starts)) then
        out[#out + 1] = 3
      else
        out[#out + 1] = 0
      end
    else
      local keep = state == 'completed' and keep_for(K, 'completed', jtype)
      -- The record's write: state, result, finish time, and the envelope emptied by the
      -- same HSET rather than deleted by an HDEL (a second command per job: ~5k Redis
      -- instructions, measured); an empty `env` reads as no payload (`Queue::status`), as a
      -- deleted one did. None when the record is dropped. For a known finish it is the
      -- first command on the record: one that is not a hash refuses it (pcall: WRONGTYPE,
      -- nothing written) and the job goes the way of pass 1's bad records; one deleted
      -- under the job gains all four fields (a live record has a `state`).
      local added
      if not bad[i] and not (keep and drops(keep)) then
        added = redis.pcall('HSET', jk, 'state', state, 'result', result, 'finished_at', nows,
                            'env', '')
        if type(added) == 'table' then bad[i] = type_of(jk) end
      end
      if bad[i] then
        local reason = '`' .. jk .. '` holds a ' .. bad[i] .. ', not a hash (WRONGTYPE): the ' ..
                       'job\'s record was overwritten while it ran; its result is lost'
        ackdel(key('q', jtype), sid)
        bury(now, jtype, id, '', reason, sid, fence(consumer, sid, starts))
        emit(now, 'dead', jtype, id, {'error', reason})
        child_done(now, id, 'dead', reason, parent, jtype, consumer)
        out[#out + 1] = 3
      else
        -- Flow keys of its own exist only if the job fanned out (`fanned_by`; a known
        -- finish's worker saw none at its start); a record deleted under the job (no `type`
        -- read, or all four fields new) cannot say, so those expire too.
        local flow, bot
        if f then
          flow, bot = f[5] or not f[2], f[6]
        else
          flow, bot = flows[i] or added == 4, A[i + 8]
        end
        local a = acked[jtype] or {}
        a[#a + 1] = sid
        acked[jtype] = a
        local c = counts[state] or {}
        c[jtype] = (c[jtype] or 0) + 1
        counts[state] = c
        if not keep then
          redis.call('PEXPIRE', jk, ttl)
          if flow then expire_flow(id, ttl) end
        elseif drops(keep) then
          if flow then record_keys(id, dropped) else dropped[#dropped + 1] = jk end
        else
          retire(now, 'completed', jtype, id, keep, flow)
        end
        batch_event(events, state, jtype, id, bot)
        -- (the record's fields it needs were read in pass 1: a dropped record is no loss; a
        -- known finish names no parent, and one that did would be looked up there)
        if f or parent ~= '' then
          child_done(now, id, state, result, parent, jtype, consumer, f)
        end
        out[#out + 1] = 1
      end
    end
  end
  for jtype, sids in pairs(acked) do ackdel_all(key('q', jtype), sids) end
  unlink_all(dropped)
  for state, c in pairs(counts) do add_counts(c, state) end
  emit_batches(now, events)
  for jtype in pairs(counts.completed or {}) do
    trim_kept(now, 'completed', jtype, keep_for(K, 'completed', jtype))
  end
  return out
end

-- finish_batch.lua: finish_batch, the body of finish.lua as a function, so
-- finish_start.lua records finishes with the same code. Follows common.lua in the function
-- library and, run as plain scripts, in the scripts that finish jobs
-- (src/engine/scripts.rs, `prelude!(Worker)`).

-- Adds the stream id of each finish in `A[first..last]` (7 values each, as finish_batch reads
-- them) to `by`, a table type -> stream ids; returns `by`.
local function finish_sids(A, first, last, by)
  for i = first, last, 7 do
    local s = by[A[i]] or {}
    s[#s + 1] = A[i + 1]
    by[A[i]] = s
  end
  return by
end

-- Records finished attempts (finish.lua's header says how); `A` holds 7 values per job from
-- index `first` to `last`: type, stream id, job id, state (completed|cancelled), result json,
-- starts, parent. `held` (optional): type -> which entries of its stream the consumer holds
-- (held_by), read by the caller for these entries and more, or ALL_HELD (the caller proved
-- them all its own); without it read here.
-- Returns {ok_1, ok_2, ...} (the codes of finish.lua's reply, without `now`).
local function finish_batch(now, K, consumer, A, first, last, held)
  -- As text: a Lua number passed to redis.call is formatted (sprintf) on every call.
  local ttl, nows = K.ttl_s, tostring(now)
  -- Pass 1, reads only: each record's fields that child_done needs (the first four),
  -- `fanned_by`, which fan_out.lua leaves on a job that fanned out, and `bot` (for the
  -- event). pcall: a record that is not a hash answers WRONGTYPE (an error table) instead
  -- of raising; its type is read for the dead letter.
  local bad, fields, jks = {}, {}, {} -- jks: each record's key, made once
  for i = first, last, 7 do
    local jk = key('job', A[i + 2])
    jks[i] = jk
    local f = redis.pcall('HMGET', jk, 'parent', 'type', 'worker', 'started_at', 'fanned_by', 'bot')
    if f.err then bad[i] = type_of(jk) else fields[i] = f end
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
  -- Nothing in between reads them: the records were read in pass 1 and ownership by `held`.
  local acked, dropped = {}, {}
  local counts = {} -- state -> type -> jobs, added to the stats once per call
  local events = {} -- state -> type -> ids and bots: one event per state and type (emit_batch)
  for i = first, last, 7 do
    local jtype, sid, id, state, result = A[i], A[i + 1], A[i + 2], A[i + 3], A[i + 4]
    local starts, parent = A[i + 5], A[i + 6]
    local jk = jks[i]
    if not all and not held[jtype][sid] then
      local f = {}
      if not bad[i] then f = redis.call('HMGET', jk, 'state', 'worker', 'stream_id', 'starts') end
      if f[1] == state and f[2] == consumer and f[3] == sid and f[4] == starts then
        out[#out + 1] = 2
      elseif not bad[i] and not f[1] and state == 'completed'
             and drops(keep_for(K, 'completed', jtype)) then
        -- no record, and completed ones are dropped at finish: this call's own finish (or
        -- another worker's, of the same job after a lost lease) was applied; nothing to do
        out[#out + 1] = 2
      elseif bad[i] and buried_by(id, fence(consumer, sid, starts)) then
        out[#out + 1] = 3
      else
        out[#out + 1] = 0
      end
    elseif bad[i] then
      local reason = '`' .. jk .. '` holds a ' .. bad[i] .. ', not a hash (WRONGTYPE): the ' ..
                     'job\'s record was overwritten while it ran; its result is lost'
      ackdel(key('q', jtype), sid)
      bury(now, jtype, id, '', reason, sid, fence(consumer, sid, starts))
      emit(now, 'dead', jtype, id, {'error', reason})
      child_done(now, id, 'dead', reason, parent, jtype, consumer)
      out[#out + 1] = 3
    else
      -- Flow keys of its own exist only if the job fanned out (`fanned_by`); a record
      -- without a `type` was deleted under it and cannot say, so those expire too.
      local f = fields[i]
      local flow = f[5] or not f[2]
      local a = acked[jtype] or {}
      a[#a + 1] = sid
      acked[jtype] = a
      local c = counts[state] or {}
      c[jtype] = (c[jtype] or 0) + 1
      counts[state] = c
      -- The envelope is emptied by the record's own HSET rather than deleted by an HDEL (a
      -- second command per job: ~5k Redis instructions, measured); an empty `env` reads as
      -- no payload (`Queue::status`), as a deleted one did.
      if state ~= 'completed' then
        redis.call('HSET', jk, 'state', state, 'result', result, 'finished_at', nows, 'env', '')
        redis.call('PEXPIRE', jk, ttl)
        if flow then expire_flow(id, ttl) end
      elseif drops(keep_for(K, 'completed', jtype)) then
        if flow then record_keys(id, dropped) else dropped[#dropped + 1] = jk end
      else
        redis.call('HSET', jk, 'state', state, 'result', result, 'finished_at', nows, 'env', '')
        retire(now, 'completed', jtype, id, keep_for(K, 'completed', jtype), flow)
      end
      batch_event(events, state, jtype, id, f[6])
      -- (the record's fields it needs were read in pass 1: a dropped record is no loss)
      child_done(now, id, state, result, parent, jtype, consumer, f)
      out[#out + 1] = 1
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

-- start_batch.lua: start_check and start_batch, the body of start.lua as functions, so
-- finish_start.lua starts entries with the same code. Follows common.lua in the function
-- library and, run as plain scripts, in the scripts that start jobs
-- (src/engine/scripts.rs, `prelude!(Worker)`).

-- nil, or why no job of `jtype` can start: a shared key of the wrong type (stats, events,
-- dlq). Reads only: a caller checks every type it starts before its first write.
-- HLEN and XLEN answer a number for a key of their type or none, and WRONGTYPE otherwise:
-- cheaper than TYPE (whose reply becomes a table), measured; TYPE names the key's type
-- only for the message.
local function start_check(jtype)
  local k, want
  if type(redis.pcall('HLEN', key('stats', jtype))) ~= 'number' then
    k, want = key('stats', jtype), 'hash'
  elseif type(redis.pcall('XLEN', key('events'))) ~= 'number' then
    k, want = key('events'), 'stream'
  elseif type(redis.pcall('XLEN', key('dlq'))) ~= 'number' then
    k, want = key('dlq'), 'stream'
  else
    return nil
  end
  return 'WRONGTYPE `' .. k .. '` holds a ' .. redis.call('TYPE', k)['ok'] .. ', not a ' ..
         want .. ': no job of type ' .. jtype .. ' can start until it is repaired'
end

-- start_batch's answer codes (read by worker.rs, `start_answers`).
-- RUN_READ: run, and let the finish read the record (finish.lua's `known`): the record
-- names flow keys of its own (`fanned_by`: the job fanned out before), or the start did not
-- look (see start_batch).
local SKIP, RUN, DEAD, RUN_READ = 0, 1, 2, 3

local function is_int(v)
  return v == false or v == nil or string.match(v, '^%-?%d+$') ~= nil
end

-- Marks freshly delivered entries of `jtype` active (start.lua's header says how); `A` holds
-- 4 values per entry from index `first` to `last`: stream id, job id, max attempts, parent
-- ('' = none). `retried`: this call repeats one whose reply was lost (a timeout), so an
-- entry already `active` by `consumer` under this very stream id is its own start, answered
-- again (run, same attempt and starts) without a write, rather than counted as a stall.
-- `held` (optional): which entries of the stream the consumer holds (held_by, or ALL_HELD
-- when the caller proved them all its own), read by the caller for these entries and more;
-- without it read here.
-- Returns {answers, reasons, bots}: answers flat, three integers per entry: code (RUN,
-- RUN_READ, SKIP, DEAD), attempt, starts; reasons: each DEAD entry's reason, in order; bots:
-- each RUN or RUN_READ entry's bot as its record names it ('' = none), in order, which its
-- finish sends back (finish.lua's `known`). start_check(jtype) must have
-- passed first.
local function start_batch(now, jtype, consumer, max_deliveries, K, A, first, last, retried,
                           held)
  local buried = false -- a record dead-lettered here: trim_kept once at the end
  local nows -- `now` as text, made at the first start
  local events = {} -- the started jobs, for one event (batch_event)
  local stream = key('q', jtype)

  -- The envelope of a stream entry (for the dead letter), or ''.
  local function entry_job(sid)
    local r = redis.call('XRANGE', stream, sid, sid)
    if r[1] then
      local f = r[1][2]
      for j = 1, #f, 2 do
        if f[j] == 'job' then return f[j + 1] end
      end
    end
    return ''
  end

  -- Which of the batch's entries this consumer holds (one XPENDING for the batch).
  if not held then
    local sids = {}
    for i = first, last, 4 do sids[#sids + 1] = A[i] end
    held = held_by(stream, consumer, sids)
  end

  -- Pass 1: reads only. Each entry gets a plan: skip, bad (reason), again, or go (its fields).
  -- `fanned_by` is read only where a finish could use it: where completed records of this
  -- type are dropped, finishes read their records anyway (only a read finds one overwritten
  -- by another type before the key goes), so every run is answered RUN_READ and the field
  -- (~3k Redis instructions per job, measured) is not read.
  local plans = {}
  local all = held == ALL_HELD
  local look = not drops(keep_for(K, 'completed', jtype))
  for i = first, last, 4 do
    local sid, id = A[i], A[i + 1]
    local jk = key('job', id)
    -- Every field pass 1 sets, so the table is sized once (fields added later grew it), and
    -- `max` as text until a start compares it; numbers are made only from fields that are
    -- there (tonumber of a default '0' is a strtod). Together ~4k Redis instructions per
    -- job in batches of 250, measured.
    local plan = {sid = sid, id = id, jk = jk, max = A[i + 2], parent = A[i + 3], code = false,
                  state = false, attempt = false, starts = false, bot = false, read = true}
    local deliveries = all and '1' or held[sid]
    -- pcall: a record of another type answers an error table (WRONGTYPE) instead of raising.
    -- Who started it and under which entry matter only to a retried call.
    local f
    if retried then
      f = redis.pcall('HMGET', jk, 'state', 'attempt', 'starts', 'bot', 'fanned_by', 'worker',
                      'stream_id')
    elseif look then
      f = redis.pcall('HMGET', jk, 'state', 'attempt', 'starts', 'bot', 'fanned_by')
    else
      f = redis.pcall('HMGET', jk, 'state', 'attempt', 'starts', 'bot')
    end
    if deliveries == nil then
      -- Acked meanwhile, or another worker holds it now: not ours to start.
      plan.code = 'skip'
    elseif f.err then
      local kind = redis.call('TYPE', jk)['ok']
      plan.code = 'bad'
      plan.reason = '`' .. jk .. '` holds a ' .. kind .. ', not a hash (WRONGTYPE): the job\'s ' ..
                    'record was overwritten; delete that key, then `synth-city dlq retry`'
    else
      plan.state, plan.attempt, plan.starts, plan.bot = f[1], f[2], f[3], f[4]
      plan.read = not look or f[5] ~= false
      if not is_int(f[2]) or not is_int(f[3]) then
        local name, v = 'attempt', f[2]
        if is_int(f[2]) then name, v = 'starts', f[3] end
        plan.code = 'bad'
        plan.reason = 'field `' .. name .. '` of `' .. jk .. '` is not an integer (' .. v ..
                      '): the job\'s record was overwritten; delete that key, then ' ..
                      '`synth-city dlq retry`'
      elseif retried and f[1] == 'active' and f[6] == consumer and f[7] == sid then
        plan.code = 'again'
      elseif (all and 1 or tonumber(deliveries)) > max_deliveries then
        plan.code = 'bad'
        plan.reason = 'delivered ' .. deliveries .. ' times without finishing (the cap is ' ..
                      max_deliveries .. ')'
        plan.record = true
      else
        plan.code = 'go'
      end
    end
    plans[#plans + 1] = plan
  end

  -- Pass 2: writes. The answers, flat (no table per entry: the reply is cheaper to convert,
  -- measured): code, attempt, starts per entry, the dead entries' reasons and the runs'
  -- bots in order.
  local out, reasons, bots = {}, {}, {}
  local function answer(code, attempt, starts, reason)
    local n = #out
    out[n + 1], out[n + 2], out[n + 3] = code, attempt, starts
    if reason then reasons[#reasons + 1] = reason end
  end
  local function run(plan, attempt, starts)
    answer(plan.read and RUN_READ or RUN, attempt, starts)
    bots[#bots + 1] = plan.bot or ''
  end
  local started = {} -- job key -> the `starts` written by this call
  for _, plan in ipairs(plans) do
    local sid, id, jk = plan.sid, plan.id, plan.jk
    local state = plan.state
    if plan.code == 'skip' then
      answer(SKIP, 0, 0)
    elseif plan.code == 'again' then
      run(plan, tonumber(plan.attempt or '0'), tonumber(plan.starts or '0'))
    elseif plan.code == 'bad' then
      local env = entry_job(sid)
      if plan.record and state then
        env = redis.call('HGET', jk, 'env') or env
      end
      ackdel(stream, sid)
      bury(now, jtype, id, env, plan.reason, sid)
      if plan.record then
        redis.call('HSET', jk, 'state', 'dead', 'error', plan.reason, 'finished_at', now)
        redis.call('HDEL', jk, 'env')
      end
      emit(now, 'dead', jtype, id, {'error', plan.reason})
      -- a child's parent learns it (named by the envelope when the record is not a hash)
      child_done(now, id, 'dead', plan.reason, plan.parent, jtype)
      if plan.record then
        retire(now, 'dead', jtype, id, keep_for(K, 'dead', jtype), false)
        buried = true
      end
      answer(DEAD, tonumber(plan.attempt or '0'), 0, plan.reason)
    elseif state == 'cancelled' or state == 'completed' or state == 'dead' then
      ackdel(stream, sid)
      answer(SKIP, 0, 0)
    else
      local attempt = plan.attempt and tonumber(plan.attempt) or 0
      if state == 'active' then
        attempt = redis.call('HINCRBY', jk, 'attempt', 1)
        redis.call('HINCRBY', key('stats', jtype), 'stalled', 1)
        emit(now, 'stalled', jtype, id, {'attempt', attempt})
      end
      if attempt >= tonumber(plan.max) then
        local env = redis.call('HGET', jk, 'env') or entry_job(sid)
        local reason = 'worker lost ' .. attempt .. ' times (lease expired)'
        ackdel(stream, sid)
        bury(now, jtype, id, env, reason, sid)
        redis.call('HSET', jk, 'state', 'dead', 'error', reason, 'finished_at', now)
        redis.call('HDEL', jk, 'env')
        emit(now, 'dead', jtype, id, {'error', reason})
        child_done(now, id, 'dead', reason, plan.parent, jtype)
        retire(now, 'dead', jtype, id, keep_for(K, 'dead', jtype), false)
        buried = true
        answer(DEAD, attempt, 0, reason)
      else
        if not state then
          redis.call('HSET', jk, 'id', id, 'type', jtype, 'attempt', attempt)
          if plan.parent ~= '' then redis.call('HSET', jk, 'parent', plan.parent) end
        end
        -- `starts` was read (and checked to be an integer) in pass 1; only an earlier entry
        -- of this batch for the same job can have changed it since.
        local starts = (started[jk] or plan.starts and tonumber(plan.starts) or 0) + 1
        started[jk] = starts
        -- As text: a Lua number passed to redis.call is formatted (sprintf) on every call;
        -- a job's first start (the common case) is a constant.
        nows = nows or tostring(now)
        redis.call('HSET', jk, 'state', 'active', 'started_at', nows, 'worker', consumer,
                   'stream_id', sid, 'starts', starts == 1 and '1' or tostring(starts))
        batch_event(events, 'started', jtype, id, plan.bot)
        run(plan, attempt, starts)
      end
    end
  end
  if buried then trim_kept(now, 'dead', jtype, keep_for(K, 'dead', jtype)) end
  -- one `started` event for the call's jobs (emit_batch), naming this worker
  emit_batches(now, events, {'worker', consumer})
  return {out, reasons, bots}
end

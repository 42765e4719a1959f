-- enqueue.lua: adds jobs. ARGV: prefix, ttl_ms, fresh, then 7 per job:
--   type, id, envelope json, idempotency key ('' = none), run_at ms (0), delay ms (0),
--   bot id ('' = none)
-- Fresh: '1' when the caller drew every id of this call at random for it (a ULID: 80 random
-- bits beside the time) and this is the call's first try, so no record can have one of
-- them yet and the existence check (EXISTS per job, ~2.7k Redis instructions, measured) is
-- skipped; '0' otherwise: an id the caller was given, or a try after one whose reply was
-- lost (it may have been applied), is looked up, and an existing job is answered instead.
-- An idempotency key is looked up either way.
-- One event per type (and state: enqueued, delayed) for the whole call (emit_batch); a call
-- of one job writes its event (`emit`: `id` and `bot` fields) and count directly, without
-- the batch's tables.
-- Returns one {id, created} pair per job.
local ttl = tonumber(ARGV[2])
local fresh = ARGV[3] == '1'
local now = now_ms()
-- When the job may run: `now` unless run_at or delay says later (without two tonumbers, a
-- strtod each, for the common '0', '0': ~4k Redis instructions per job, measured).
local function ready_at(run_at, delay)
  if run_at == '0' and delay == '0' then return now end
  return math.max(tonumber(run_at), now + tonumber(delay))
end
if #ARGV == 10 then
  local ready = ready_at(ARGV[8], ARGV[9])
  return {enqueue_one(now, ARGV[4], ARGV[5], ARGV[6], ARGV[7], ready, ttl, ARGV[10], nil, nil,
                      fresh)}
end
local out = {}
local counts, events = {}, {}
for i = 4, #ARGV, 7 do
  local ready = ready_at(ARGV[i + 4], ARGV[i + 5])
  out[#out + 1] = enqueue_one(now, ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ready, ttl,
                              ARGV[i + 6], counts, events, fresh)
end
add_counts(counts, 'enqueued')
emit_batches(now, events)
return out

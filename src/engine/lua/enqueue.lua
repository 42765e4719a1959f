-- enqueue.lua: adds jobs. ARGV: prefix, ttl_ms, then 7 per job:
--   type, id, envelope json, idempotency key ('' = none), run_at ms (0), delay ms (0),
--   bot id ('' = none)
-- One event per type (and state: enqueued, delayed) for the whole call (emit_batch); a call
-- of one job writes its event (`emit`: `id` and `bot` fields) and count directly, without
-- the batch's tables.
-- Returns one {id, created} pair per job.
local ttl = tonumber(ARGV[2])
local now = now_ms()
if #ARGV == 9 then
  local ready = math.max(tonumber(ARGV[7]), now + tonumber(ARGV[8]))
  return {enqueue_one(now, ARGV[3], ARGV[4], ARGV[5], ARGV[6], ready, ttl, ARGV[9])}
end
local out = {}
local counts, events = {}, {}
for i = 3, #ARGV, 7 do
  local ready = math.max(tonumber(ARGV[i + 4]), now + tonumber(ARGV[i + 5]))
  out[#out + 1] = enqueue_one(now, ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ready, ttl,
                              ARGV[i + 6], counts, events)
end
add_counts(counts, 'enqueued')
emit_batches(now, events)
return out

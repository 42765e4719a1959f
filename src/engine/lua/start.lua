-- start.lua: marks freshly delivered entries active. ARGV: prefix, type, consumer,
-- max deliveries, retention of finished records (keep_policy in common.lua: what a record
-- dead-lettered here keeps), retried ('1': this call repeats one whose reply was lost, '0'),
-- owned until (the worker's lease proof, as in finish_start.lua; '0' = none), then 4 per
-- entry: stream id, job id, max attempts, parent (the flow parent its envelope
-- names, '' = none). The work is start_batch in start_batch.lua.
-- A child dead-lettered here tells its parent (child_done in common.lua), through its
-- envelope's parent when its record is not a hash; a child whose record was deleted gets
-- a fresh one that names the parent again.
-- All or nothing per entry: a first pass reads and checks everything the writes will
-- touch (no write happens before it ends), so a script error can never leave half a batch
-- started. An entry that cannot be started is dead-lettered with its reason and the
-- others start:
-- - its `job:<id>` key is not a hash, or its `attempt`/`starts` field is not an integer
--   (the record was overwritten: WRONGTYPE);
-- - it was delivered more than `max deliveries` times (XREADGROUP or XAUTOCLAIM, counted by
--   the group's pending list) without finishing;
-- - its job is already `active` (a stall: its worker lost the lease), which counts as a
--   failed attempt, and that was its last. A retried call (ARGV[6] = '1') instead answers
--   `run` again, without a write, for an entry that this consumer already started under
--   this stream id: the lost reply's own start.
-- A shared key of the wrong type (stats, events, dlq) stops the whole call before any write.
-- Returns {now, answers, reasons, bots}: start_batch's (per entry code
-- run|skip|dead|run-and-let-the-finish-read as 1|0|2|3, attempt and starts, flat; the dead
-- entries' reasons in order; the runs' bots in order).
local jtype = ARGV[2]
local bad = start_check(jtype)
if bad then return redis.error_reply(bad) end
local now = now_ms()
local retried = ARGV[6] == '1'
-- With no proof start_batch reads the pending list itself.
local held
if proven(now, ARGV[7], retried) then held = ALL_HELD end
local r = start_batch(now, jtype, ARGV[3], tonumber(ARGV[4]), keep_policy(ARGV[5]), ARGV, 8,
                      #ARGV, retried, held)
return {now, r[1], r[2], r[3]}

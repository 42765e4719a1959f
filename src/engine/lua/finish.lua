-- finish.lua: records finished attempts; one event per state and type for the whole call
-- (emit_batch in common.lua). ARGV: prefix, retention (keep_policy in
-- common.lua: a completed record is dropped at once, or expires and is counted in its
-- type's `kept:completed` index; a cancelled one keeps the ttl), consumer, then 9 per
-- job: type, stream id, job id, state (completed|cancelled), result json, starts (the
-- start this worker ran: the fencing token's second half), parent (the flow parent its
-- envelope names, '' = none), known, bot. The work is finish_batch in finish_batch.lua.
-- Known: '1' when this worker's start of the job read its record and found no flow keys of
-- its own (start_batch's RUN), '0' when it found some or did not look (RUN_READ); bot: the
-- record's bot as that start read it ('' = none). For a job without a parent they stand in
-- for most of the record's read: a known one's record is written without a read, and one
-- dropped at finish reads only whether it has flow keys (finish_batch says how).
-- A child job's outcome goes on its parent (child_done in common.lua), found through the
-- envelope's parent when the record cannot name it.
-- Only the consumer that still owns the entry may finish it; a stale finisher
-- (its lease was lost and the job re-delivered) changes nothing. A call that is
-- retried after it was applied (its reply was lost to a timeout) finds its own finish:
-- the record is in that state, by this worker, for this entry and start; or, when the
-- record is not a hash, its own dead letter (buried_by in common.lua).
-- A job whose record is not a hash (overwritten) is dead-lettered, not half-finished:
-- its record's type is checked (the read, or for a known finish its write, which such a
-- record refuses) before anything of that job is written.
-- Returns {now, ok_1, ok_2, ...} with ok = 1 recorded, 0 stale, 2 already recorded by
-- this very finish, 3 dead-lettered (the record was not a hash; a retry of that call
-- answers 3 again). A retry of a completion whose record was dropped at finish (retention
-- 0) finds no record and answers 2: it cannot tell its own finish from another worker's.
local now = now_ms()
local out = {now}
for _, ok in ipairs(finish_batch(now, keep_policy(ARGV[2]), ARGV[3], ARGV, 4, #ARGV)) do
  out[#out + 1] = ok
end
return out

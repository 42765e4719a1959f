-- finish_start.lua: a steady worker's one call per batch (BullMQ's moveToFinished, which
-- also fetches the next job, is the precedent): records finished attempts (finish_batch, as
-- finish.lua) and starts the entries the worker read last (start_batch, as start.lua). The
-- worker sends its next read, a plain XREADGROUP, beside this call on the same connection
-- (one round trip for both): a read inside the script cost Redis about 25k more
-- instructions per entry than the plain command (its reply converted into Lua and back
-- out), measured under callgrind.
-- ARGV: prefix, retention (keep_policy in common.lua), consumer, max deliveries, retried
-- ('1': this call repeats one whose reply was lost, see start_batch; '0'), owned until (a
-- server time in ms, '0' = none: see below), F (how many finishes), then 9 per finish
-- (finish.lua's: type, stream id, job id, state, result json, starts, parent, known, bot),
-- then, to the end, groups of entries to start: type, n, then 4 per entry
-- (start.lua's: stream id, job id, max attempts, parent).
-- Order: every started type's shared keys are checked (start_check) before the first
-- write, and a wrong type stops the whole call, as in start.lua; then the finishes, then the
-- starts.
-- Owned until: the worker's proof, by the lease, that every entry this call finishes or
-- starts is still its own, so the pending list need not be read (held_by: ~21k Redis
-- instructions per job in batches of 250, measured). The worker sends the least server time
-- at or before which its entries were delivered to it (a TIME pipelined ahead of each of its
-- reads), plus half its lease, and only for entries first delivered by a
-- plain read (`>`: one delivery) and a call that is not a retry. Another worker takes an
-- entry over only once it has been idle a lease (XAUTOCLAIM's min idle time; the owner's
-- renewals only make it younger), so before that time none can have: measured by this
-- server's clock on both sides, whatever the worker's. Past it (a slow job, a paused worker)
-- the pending list is read as before.
-- Returns {now, {ok per finish (finish.lua's codes)}, {{type, answers, reasons, bots} per
-- group}} (start_batch's answers, reasons and bots, as start.lua returns them).
local consumer, max_deliveries = ARGV[3], tonumber(ARGV[4])
local retried = ARGV[5] == '1'
local K = keep_policy(ARGV[2])
local fi = 8 -- the first finish's index
local F = tonumber(ARGV[7])
local si = fi + FINISH_ARGS * F -- the first start group's index

local groups = {}
local i = si
while i <= #ARGV do
  local n = tonumber(ARGV[i + 1])
  groups[#groups + 1] = {jtype = ARGV[i], first = i + 2, last = i + 1 + 4 * n}
  i = i + 2 + 4 * n
end
for _, g in ipairs(groups) do
  local bad = start_check(g.jtype)
  if bad then return redis.error_reply(bad) end
end

-- Which entries of each stream this consumer holds, for the finishes and the starts together:
-- all of them when the call proves it (ALL_HELD), else one XPENDING per type (held_by,
-- over their ids' milliseconds) instead of one for the finishes and one for the starts.
-- Every held entry that a finish names is acked by it, so those are taken out before the
-- starts read the answer (which is then what a read after the finishes would say: a finish
-- adds no entry to a pending list).
local now = now_ms()
local held = ALL_HELD
local all = proven(now, ARGV[6], retried)
if not all then
  held = {}
  local sids = finish_sids(ARGV, fi, si - 1, {})
  for _, g in ipairs(groups) do
    local s = sids[g.jtype] or {}
    for e = g.first, g.last, 4 do s[#s + 1] = ARGV[e] end
    sids[g.jtype] = s
  end
  for jtype, s in pairs(sids) do held[jtype] = held_by(key('q', jtype), consumer, s) end
end

local finished = {}
if F > 0 then
  finished = finish_batch(now, K, consumer, ARGV, fi, si - 1, held)
  if not all then
    for f = fi, si - 1, FINISH_ARGS do held[ARGV[f]][ARGV[f + 1]] = nil end
  end
end
local started = {}
for _, g in ipairs(groups) do
  local r = start_batch(now, g.jtype, consumer, max_deliveries, K, ARGV, g.first, g.last,
                        retried, all and ALL_HELD or held[g.jtype])
  started[#started + 1] = {g.jtype, r[1], r[2], r[3]}
end
return {now, finished, started}

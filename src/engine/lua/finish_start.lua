-- finish_start.lua: a steady worker's one call per batch (BullMQ's moveToFinished, which
-- also fetches the next job, is the precedent): records finished attempts (finish_batch, as
-- finish.lua), starts the entries the previous call read (start_batch, as start.lua), and
-- reads the next entries for the slots that freed up (XREADGROUP, not started here: the
-- worker decodes them and starts them with its next call).
-- ARGV: prefix, retention (keep_policy in common.lua), consumer, max deliveries, retried
-- ('1': this call repeats one whose reply was lost, see start_batch; '0'), read count (0 =
-- read nothing), R (how many types to read), then R types, then F (how many finishes), then
-- 7 per finish (finish.lua's: type, stream id, job id, state, result json, starts, parent),
-- then, to the end, groups of entries to start: type, n, then 4 per entry (start.lua's:
-- stream id, job id, max attempts, parent).
-- Order: every started type's shared keys are checked (start_check) before the first
-- write, and a wrong type stops the whole call, as in start.lua; then the finishes, then the
-- starts, then the read. The read takes at most `read count` entries over all the types (one
-- XREADGROUP per type until it has them); it is a pcall, so a missing group or a stream key
-- of another type reads nothing instead of failing a call that already wrote.
-- Returns {now, {ok per finish (finish.lua's codes)}, {{type, {per entry: start.lua's
-- reply}} per group}, {{type, stream id, {field, value, ...}} per entry read}}.
local consumer, max_deliveries = ARGV[3], tonumber(ARGV[4])
local retried, want = ARGV[5] == '1', tonumber(ARGV[6])
local K = keep_policy(ARGV[2])
local R = tonumber(ARGV[7])
local fi = 9 + R -- the first finish's index
local F = tonumber(ARGV[8 + R])
local si = fi + 7 * F -- the first start group's index

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
-- one XPENDING per type (held_by, over their lowest to highest id) instead of one for the
-- finishes and one for the starts. Every held entry that a finish names is acked by it, so
-- those are taken out before the starts read the answer (which is then what a read after
-- the finishes would say: a finish adds no entry to a pending list).
local sids = finish_sids(ARGV, fi, si - 1, {})
for _, g in ipairs(groups) do
  local s = sids[g.jtype] or {}
  for e = g.first, g.last, 4 do s[#s + 1] = ARGV[e] end
  sids[g.jtype] = s
end
local held = {}
for jtype, s in pairs(sids) do held[jtype] = held_by(key('q', jtype), consumer, s) end

local now = now_ms()
local finished = {}
if F > 0 then
  finished = finish_batch(now, K, consumer, ARGV, fi, si - 1, held)
  for f = fi, si - 1, 7 do held[ARGV[f]][ARGV[f + 1]] = nil end
end
local started = {}
for _, g in ipairs(groups) do
  started[#started + 1] = {g.jtype, start_batch(now, g.jtype, consumer, max_deliveries, K, ARGV,
                                               g.first, g.last, retried, held[g.jtype])}
end
local read = {}
for r = 8, 7 + R do
  if #read >= want then break end
  local jtype = ARGV[r]
  local got = redis.pcall('XREADGROUP', 'GROUP', GROUP, consumer, 'COUNT', want - #read,
                          'STREAMS', key('q', jtype), '>')
  if type(got) == 'table' and not got.err and got[1] then
    for _, e in ipairs(got[1][2]) do read[#read + 1] = {jtype, e[1], e[2]} end
  end
end
return {now, finished, started, read}

-- bury_raw.lua: dead-letters an entry that cannot be decoded. ARGV: prefix, consumer,
-- type, stream id, raw entry (json of its fields), reason, job id ('' = unknown), parent
-- (the flow parent the entry names, '' = none or unknown).
-- The job's record is marked dead only when it is a hash (checked before any write); a
-- child's parent learns it either way (child_done in common.lua).
-- Not retried by the worker: a call whose reply was lost leaves the entry dead-lettered
-- (it is gone from the stream), and the worker only logs that it could not tell.
local consumer, jtype, sid, raw, reason, id = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local parent = ARGV[8] or ''
local stream = key('q', jtype)
if not owns(stream, sid, consumer) then return 0 end
local jk = key('job', id)
local record = id ~= '' and type_of(jk) == 'hash'
local now = now_ms()
ackdel(stream, sid)
bury(now, jtype, id, raw, reason, sid)
if record then
  redis.call('HSET', jk, 'state', 'dead', 'error', reason, 'finished_at', now)
end
emit(now, 'dead', jtype, id, {'error', reason})
if id ~= '' then child_done(now, id, 'dead', reason, parent, jtype, consumer) end
return 1

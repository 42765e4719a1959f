-- bury_raw.lua: dead-letters an entry that cannot be decoded. ARGV: prefix, consumer,
-- type, stream id, raw entry (json of its fields), reason, job id ('' = unknown).
local consumer, jtype, sid, raw, reason, id = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local stream = key('q', jtype)
if not owns(stream, sid, consumer) then return 0 end
local now = now_ms()
ackdel(stream, sid)
bury(now, jtype, id, raw, reason, sid)
if id ~= '' and redis.call('EXISTS', key('job', id)) == 1 then
  redis.call('HSET', key('job', id), 'state', 'dead', 'error', reason, 'finished_at', now)
end
emit(now, 'dead', jtype, id, {'error', reason})
if id ~= '' then child_done(now, id, 'dead', reason) end
return 1

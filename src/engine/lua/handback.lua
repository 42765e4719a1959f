-- handback.lua: returns unfinished jobs to their stream at shutdown, without counting
-- an attempt. ARGV: prefix, consumer, type, then 3 per job: stream id, job id, raw envelope.
local consumer, jtype = ARGV[2], ARGV[3]
local stream = key('q', jtype)
local now = now_ms()
local n = 0
for i = 4, #ARGV, 3 do
  local sid, id, env = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if owns(stream, sid, consumer) then
    ackdel(stream, sid)
    local nsid = redis.call('XADD', stream, '*', 'job', env, 'at', now)
    redis.call('HSET', key('job', id), 'state', 'waiting', 'stream_id', nsid)
    emit(now, 'handed_back', jtype, id, {'worker', consumer})
    n = n + 1
  end
end
return n

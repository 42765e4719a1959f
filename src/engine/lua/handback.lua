-- handback.lua: returns unfinished jobs to their stream at shutdown, without counting
-- an attempt. ARGV: prefix, consumer, type, then 3 per job: stream id, job id, raw envelope.
-- Only entries this consumer still owns move, so a call retried after Redis applied it
-- (its reply lost to a timeout) moves nothing twice; the worker does not read the count.
-- A record that is not a hash (overwritten) is left as it is and its entry handed back:
-- start.lua dead-letters it with its reason on the next delivery.
local consumer, jtype = ARGV[2], ARGV[3]
local stream = key('q', jtype)
local now = now_ms()
local n = 0
for i = 4, #ARGV, 3 do
  local sid, id, env = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if owns(stream, sid, consumer) then
    ackdel(stream, sid)
    local nsid = redis.call('XADD', stream, '*', 'job', env, 'at', now)
    local jk = key('job', id)
    if type_of(jk) == 'hash' then
      redis.call('HSET', jk, 'state', 'waiting', 'stream_id', nsid)
    end
    emit(now, 'handed_back', jtype, id, {'worker', consumer})
    n = n + 1
  end
end
return n

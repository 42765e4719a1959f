-- renew.lua: extends the leases of running jobs. ARGV: prefix, type, consumer, then
-- 2 per job: stream id, job id. XCLAIM ... JUSTID by the owner resets the
-- entry's idle time, which is the lease XAUTOCLAIM measures (server clock).
-- Returns per job 0 = renewed, 1 = lost (another worker has it), 2 = cancel requested.
local jtype, consumer = ARGV[2], ARGV[3]
local stream = key('q', jtype)
local out = {}
for i = 4, #ARGV, 2 do
  local sid, id = ARGV[i], ARGV[i + 1]
  if owns(stream, sid, consumer) then
    redis.call('XCLAIM', stream, GROUP, consumer, 0, sid, 'JUSTID')
    if redis.call('HGET', key('job', id), 'cancel') == '1' then
      out[#out + 1] = 2
    else
      out[#out + 1] = 0
    end
  else
    out[#out + 1] = 1
  end
end
return out

-- renew.lua: extends the leases of running jobs. ARGV: prefix, type, consumer, then
-- 2 per job: stream id, job id. XCLAIM ... JUSTID by the owner resets the
-- entry's idle time, which is the lease XAUTOCLAIM measures (server clock).
-- A record that is not a hash (overwritten) is renewed without reading it, so it cannot
-- fail the call for the whole batch; its finish or fail dead-letters it.
-- Idempotent: the worker does not retry a failed call (the next period renews again), and
-- a second renewal of an entry still owned only resets its idle time again.
-- Returns per job 0 = renewed, 1 = lost (another worker has it), 2 = cancel requested.
local jtype, consumer = ARGV[2], ARGV[3]
local stream = key('q', jtype)
local out = {}
for i = 4, #ARGV, 2 do
  local sid, id = ARGV[i], ARGV[i + 1]
  if owns(stream, sid, consumer) then
    redis.call('XCLAIM', stream, GROUP, consumer, 0, sid, 'JUSTID')
    local jk = key('job', id)
    if type_of(jk) == 'hash' and redis.call('HGET', jk, 'cancel') == '1' then
      out[#out + 1] = 2
    else
      out[#out + 1] = 0
    end
  else
    out[#out + 1] = 1
  end
end
return out

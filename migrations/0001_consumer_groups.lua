-- 0001: one stream and one consumer group ("workers") per job type.
-- ARGV: prefix, then the job type names of this build. The group starts at id 0
-- so entries added before the group existed are still delivered.
local P = ARGV[1]
for i = 2, #ARGV do
  local stream = '{' .. P .. '}:q:' .. ARGV[i]
  local ok, err = pcall(redis.call, 'XGROUP', 'CREATE', stream, 'workers', '0', 'MKSTREAM')
  if not ok and not string.find(tostring(err), 'BUSYGROUP') then
    return redis.error_reply(tostring(err))
  end
end
return #ARGV - 1

-- session.lua: follows common.lua in the function library and, run as plain scripts,
-- in the bridge's bot-session scripts (session_*.lua). A bot's session is `bot:<bot>:session` (hash),
-- `bot:<bot>:experiments` (hash), `bot:<bot>:active` (set of `job:<id>` /
-- `run:<id>` in flight) and its entry in the `bots` zset. `refresh` prunes
-- finished work, then persists the session while work is in flight or sets
-- its idle TTL, and drops up to 20 index entries whose sessions have expired.
local DONE = {succeeded = true, failed = true, cancelled = true, completed = true, dead = true}
local function prune(bot)
  local ak = key('bot', bot, 'active')
  for _, m in ipairs(redis.call('SMEMBERS', ak)) do
    local kind, id = string.match(m, '^(%a+):(.+)$')
    local st = false
    if kind == 'run' then st = redis.call('HGET', key('run', id), 'state')
    elseif kind == 'job' then st = redis.call('HGET', key('job', id), 'state') end
    if (not st) or DONE[st] then redis.call('SREM', ak, m) end
  end
  return redis.call('SCARD', ak)
end
local function refresh(bot, ttl)
  local now = now_ms()
  local sk, ek, ak = key('bot', bot, 'session'), key('bot', bot, 'experiments'), key('bot', bot, 'active')
  redis.call('HSETNX', sk, 'created_at', now)
  redis.call('HSET', sk, 'last_active', now)
  local idx = key('bots')
  redis.call('ZADD', idx, now, bot)
  -- the index forgets bots whose sessions have expired, a few per call (bounded work): bots
  -- that called once and never again do not pile up in it
  for _, b in ipairs(redis.call('ZRANGEBYSCORE', idx, '-inf', now - ttl * 1000, 'LIMIT', 0, 20)) do
    if redis.call('EXISTS', key('bot', b, 'session')) == 0 then redis.call('ZREM', idx, b) end
  end
  local active = prune(bot)
  if active > 0 then
    redis.call('PERSIST', sk); redis.call('PERSIST', ek); redis.call('PERSIST', ak)
  else
    redis.call('EXPIRE', sk, ttl); redis.call('EXPIRE', ek, ttl)
  end
  return active
end

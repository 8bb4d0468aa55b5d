-- promote: move due jobs from the schedule to the ready list, oldest due first.
-- Atomic, so any number of schedulers promote each job exactly once.
-- KEYS: scheduled, ready
-- ARGV: limit (most jobs moved by one call)
-- Returns {moved, ms until the next scheduled job is due (-1: none left)}.
local scheduled, ready = KEYS[1], KEYS[2]
local now = now_ms()
local ids = redis.call('ZRANGEBYSCORE', scheduled, '-inf', int(now), 'LIMIT', 0, tonumber(ARGV[1]))
if #ids > 0 then
  redis.call('ZREM', scheduled, unpack(ids))
  redis.call('LPUSH', ready, unpack(ids))
end
local next_due = redis.call('ZRANGE', scheduled, 0, 0, 'WITHSCORES')[2]
local delay = -1
if next_due then
  delay = math.max(0, tonumber(next_due) - now)
end
return {#ids, delay}

-- promote: move due jobs from the schedule to the ready list, oldest due first.
-- Atomic, so any number of schedulers promote each job exactly once.
-- include: common
-- KEYS: scheduled, ready
-- ARGV: limit (most jobs moved by one call)
-- Returns {moved, µs until the next scheduled job is due (-1: none left)}: in µs,
-- not ms, so that a scheduler's sleep is not up to 1 ms too long.
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now = int(math.floor(now_us / 1000))
local ids = redis.call('ZRANGEBYSCORE', scheduled, '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
if #ids > 0 then
  redis.call('ZREM', scheduled, unpack(ids))
  redis.call('LPUSH', ready, unpack(ids))
end
local next_due = redis.call('ZRANGE', scheduled, 0, 0, 'WITHSCORES')[2]
local delay = -1
if next_due then
  delay = math.max(0, tonumber(next_due) * 1000 - now_us)
end
return {#ids, delay}

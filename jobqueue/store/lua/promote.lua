-- promote: move due jobs from the schedule to the ready list, oldest due first.
-- Atomic, so any number of schedulers promote each job exactly once. A job of a
-- priority other than the default goes in line by it (its score carries it:
-- include/priority.lua).
-- include: common, priority
-- KEYS: scheduled, ready, prio
-- ARGV: limit (most jobs moved by one call)
-- Returns {moved, µs until the next scheduled job is due (-1: none left)}: in µs,
-- not ms, so that a scheduler's sleep is not up to 1 ms too long.
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now = int(math.floor(now_us / 1000))
local scored = redis.call('ZRANGEBYSCORE', scheduled, '-inf', now, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[1]))
local ids, due = {}, {}
local l = lines(ready, prio)
for i = 1, #scored, 2 do
  local id = scored[i]
  ids[#ids + 1] = id
  local priority = scheduled_priority(scored[i + 1])
  if priority == DEFAULT_PRIORITY then
    due[#due + 1] = id
  else
    line_up(l, id, priority, false)
  end
end
if #ids > 0 then
  redis.call('ZREM', scheduled, unpack(ids))
end
if #due > 0 then
  redis.call('LPUSH', ready, unpack(due))
end
wake_idle(l)
local next_due = redis.call('ZRANGE', scheduled, 0, 0, 'WITHSCORES')[2]
local delay = -1
if next_due then
  delay = math.max(0, tonumber(next_due) * 1000 - now_us)
end
return {#ids, delay}

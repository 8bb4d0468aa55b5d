-- tidy: the reaper's upkeep of one type's keys. It trims the finished indexes
-- to retention (the scripts trim them only at a type's first finish of a
-- minute, so a type that stopped finishing jobs would keep its expired ids),
-- and tells whether the type holds anything at all: no job in any state, no
-- worker, not paused. With `forget`, an empty type whose `total_enqueued` is still the one
-- the caller saw when it found it empty (no enqueue since) loses its `stats`,
-- `defaults` and `suspects`, and `expiring` (with no unfinished job, its ids name
-- only jobs that ran, ended or are gone): the caller drops it from the types registry.
-- include: common
-- KEYS: scheduled, ready, popped, suspects, leases, failed, workers, defaults, stats, live, completed, cancelled, prio, expired, expiring
-- ARGV: retention_ms, forget ('1' or '0'), total_enqueued the caller saw (with forget)
-- Returns -1 if the type holds something; else, without forget, its total_enqueued
-- (0 when it has no stats); with forget, 1 once forgotten, -1 if it changed.
local retention, forget, seen = tonumber(ARGV[1]), ARGV[2], ARGV[3]

local past = '(' .. int(now_ms() - retention)
for _, index in ipairs({failed, completed, cancelled, expired}) do
  redis.call('ZREMRANGEBYSCORE', index, '-inf', past)
end
for _, sorted in ipairs({scheduled, leases, failed, workers, live, completed, cancelled, prio, expired}) do
  if redis.call('ZCARD', sorted) > 0 then
    return -1
  end
end
if redis.call('LLEN', ready) > 0 or redis.call('LLEN', popped) > 0 then
  return -1
end
local kept = redis.call('HMGET', stats, 'total_enqueued', 'paused')
if kept[2] == '1' then
  return -1  -- a paused type stays paused, and so registered
end
local total = kept[1] or '0'
if forget ~= '1' then
  return tonumber(total)
end
if total ~= seen then
  return -1
end
redis.call('DEL', stats, defaults, suspects, expiring)
return 1

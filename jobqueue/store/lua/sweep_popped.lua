-- sweep_popped: return ids that a worker popped but never claimed to `ready`.
-- A worker killed between its BLMOVE and its claim leaves the id in `popped`.
-- Each sweep notes when it first saw an id there; an id still there after
-- stall_ms goes back to the head of the ready list. A claim that comes later
-- finds the id gone and skips it, so the job never runs twice because of this.
-- include: common
-- KEYS: popped, suspects, ready
-- ARGV: stall_ms
-- Returns the number of ids swept back.
local stall_ms = tonumber(ARGV[1])

local now = now_ms()
local present = {}
local swept = 0
for _, id in ipairs(redis.call('LRANGE', popped, 0, -1)) do
  present[id] = true
  local first_seen = redis.call('HGET', suspects, id)
  if not first_seen then
    redis.call('HSET', suspects, id, int(now))
  elseif now - tonumber(first_seen) >= stall_ms then
    redis.call('LREM', popped, 1, id)
    redis.call('HDEL', suspects, id)
    redis.call('RPUSH', ready, id)
    swept = swept + 1
  end
end
for _, id in ipairs(redis.call('HKEYS', suspects)) do
  if not present[id] then
    redis.call('HDEL', suspects, id)
  end
end
return swept

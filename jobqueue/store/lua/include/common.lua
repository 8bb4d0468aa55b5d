-- common: what every script shares: the job statuses and the clock.
-- Job statuses as stored in the job hash (the proto enum's numbers).
local PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, EXPIRED = '1', '2', '3', '4', '5', '6'

-- All times come from the Redis server's clock, so that servers and workers on
-- different machines agree on when a job is due and when a lease expires.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Integers as exact decimal strings (Lua's tostring would switch to exponents).
local function int(n)
  return string.format('%d', n)
end

-- sweep_popped: return ids that a worker popped but never claimed to `ready`.
-- A worker killed between its BLMOVE and its claim leaves the id in `popped`.
-- Each sweep notes when it first saw an id there; an id still there after
-- stall_ms goes back to the front of its line (`ready`, or `prio` by its
-- priority: include/priority.lua). The caller declares the jobs of the ids it
-- saw in `popped` just before; an id it did not see waits for the next sweep.
-- A claim that comes later finds the id gone and skips it, so the job never
-- runs twice because of this.
-- include: common, priority
-- KEYS: popped, suspects, ready, prio, ...the jobs of the ids in `popped`
-- ARGV: stall_ms
-- Returns the number of ids swept back.
local stall_ms = tonumber(ARGV[1])

local now = now_ms()
local job_of = {}
for i = FIXED_KEYS + 1, #KEYS do
  job_of[string.sub(KEYS[i], -36)] = KEYS[i]
end
local l = lines(ready, prio)
local present = {}
local swept = 0
for _, id in ipairs(redis.call('LRANGE', popped, 0, -1)) do
  present[id] = true
  local first_seen = redis.call('HGET', suspects, id)
  if not first_seen then
    redis.call('HSET', suspects, id, int(now))
  elseif now - tonumber(first_seen) >= stall_ms and job_of[id] then
    redis.call('LREM', popped, 1, id)
    redis.call('HDEL', suspects, id)
    line_up(l, id, priority_of(redis.call('HGET', job_of[id], 'priority')), true)
    swept = swept + 1
  end
end
wake_idle(l)
for _, id in ipairs(redis.call('HKEYS', suspects)) do
  if not present[id] then
    redis.call('HDEL', suspects, id)
  end
end
return swept

-- expire: end the PENDING jobs no worker started by their expiry as EXPIRED (the
-- reaper's pass over `expiring`), so that they do not wait in `scheduled` or
-- `ready` for a worker that may never come. A claim checks the expiry too
-- (claim_popped), so a job never starts late whether or not this ran.
-- An id leaves `expiring` here: expired, or its job is running, retrying,
-- finished, was redriven (no expiry any more) or is gone. An expired job leaves `scheduled`;
-- a copy of its id in `ready` stays, and the claim skips it (as after a cancel).
-- include: common, outcomes, changes, expire
-- KEYS: expiring, scheduled, live, expired, stats, events, ...the jobs
-- ARGV: retention_ms, type, id 1, ..., id N (ids from `expiring` past their score)
-- Returns the ids of the jobs that ended EXPIRED.
local retention = ARGV[1]
local c = changes(now_ms(), stats)
local done = {}
local ended = {}
for i = 1, #KEYS - FIXED_KEYS do
  local job, id = KEYS[FIXED_KEYS + i], ARGV[2 + i]
  local state = redis.call('HMGET', job, 'status', 'expires_at_ms', 'attempt', 'unique_lock')
  if state[1] == PENDING and past_expiry(state[2], state[3], c.now) then
    expire(c, job, live, expired, id, state[3], retention, state[4] or nil)
    ended[#ended + 1] = id
    done[#done + 1] = id
  elseif not (state[1] == PENDING and state[2] and (tonumber(state[3]) or 0) == 0) then
    done[#done + 1] = id  -- nothing left to expire
  end
end
if #ended > 0 then
  redis.call('ZREM', scheduled, unpack(ended))
end
if #done > 0 then
  redis.call('ZREM', expiring, unpack(done))
end
commit(c, events, ARGV[2], '', '')
return ended

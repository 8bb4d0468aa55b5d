-- release: hand a running job back (graceful worker shutdown).
-- The job becomes PENDING at the head of the ready list and the interrupted run
-- does not count as an attempt.
-- KEYS: job, leases, ready, held
-- ARGV: id, lease_token
-- Returns {'ok'} | {'stale', current status or ''}.
local job, leases, ready, held = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, token = ARGV[1], ARGV[2]

local state = redis.call('HMGET', job, 'status', 'lease_token')
if state[1] ~= RUNNING or state[2] ~= token then
  return {'stale', state[1] or ''}
end
redis.call('HSET', job, 'status', PENDING, 'updated_at', int(now_ms()))
redis.call('HINCRBY', job, 'attempt', -1)
redis.call('ZREM', leases, id)
redis.call('SREM', held, id)
redis.call('RPUSH', ready, id)
return {'ok'}

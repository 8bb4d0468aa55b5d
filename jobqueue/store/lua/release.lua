-- release: hand a running job back (graceful worker shutdown).
-- The job becomes PENDING at the head of the ready list and the interrupted run
-- does not count as an attempt.
-- KEYS: job, leases, ready
-- ARGV: id, lease_token
-- Returns {'ok'} | {'stale', current status or ''}.
local job, leases, ready = KEYS[1], KEYS[2], KEYS[3]
local id, token = ARGV[1], ARGV[2]

local held = redis.call('HMGET', job, 'status', 'lease_token')
if held[1] ~= RUNNING or held[2] ~= token then
  return {'stale', held[1] or ''}
end
redis.call('HSET', job, 'status', PENDING, 'updated_at', int(now_ms()))
redis.call('HINCRBY', job, 'attempt', -1)
redis.call('ZREM', leases, id)
redis.call('RPUSH', ready, id)
return {'ok'}

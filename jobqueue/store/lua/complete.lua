-- complete: record a successful run, from the lease holder only.
-- The fencing token must be the current one: a worker whose lease expired and
-- was taken over, or whose job was cancelled, cannot overwrite the outcome.
-- Recording it twice with the same token is a no-op, so a caller may retry
-- after losing the reply.
-- KEYS: job, leases, held
-- ARGV: id, lease_token, retention_ms
-- Returns {'ok'} | {'stale', current status or ''}.
local job, leases, held = KEYS[1], KEYS[2], KEYS[3]
local id, token, retention = ARGV[1], ARGV[2], ARGV[3]

local state = redis.call('HMGET', job, 'status', 'lease_token')
if state[1] == COMPLETED and state[2] == token then
  return {'ok'}
end
if state[1] ~= RUNNING or state[2] ~= token then
  return {'stale', state[1] or ''}
end
local now = int(now_ms())
redis.call('HSET', job, 'status', COMPLETED, 'finished_at', now, 'updated_at', now)
redis.call('ZREM', leases, id)
redis.call('SREM', held, id)
redis.call('PEXPIRE', job, retention)
return {'ok'}

-- finish: record the end of a run (COMPLETED or FAILED) from the lease holder.
-- The fencing token must be the current one: a worker whose lease expired and
-- was taken over, or whose job was cancelled, cannot overwrite the outcome.
-- Recording the same outcome twice with the same token is a no-op, so a caller
-- may retry after losing the reply.
-- KEYS: job, leases
-- ARGV: id, lease_token, status, error text (FAILED only), retention_ms
-- Returns {'ok'} | {'stale', current status or ''}.
local job, leases = KEYS[1], KEYS[2]
local id, token, status, err, retention = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]

local held = redis.call('HMGET', job, 'status', 'lease_token')
if held[1] == status and held[2] == token then
  return {'ok'}  -- a retry of a call whose reply was lost: already recorded
end
if held[1] ~= RUNNING or held[2] ~= token then
  return {'stale', held[1] or ''}
end
local now = int(now_ms())
redis.call('HSET', job, 'status', status, 'finished_at', now, 'updated_at', now)
if status == FAILED then
  redis.call('HSET', job, 'last_error', err)
end
redis.call('ZREM', leases, id)
redis.call('PEXPIRE', job, retention)
return {'ok'}

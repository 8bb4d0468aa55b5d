-- recover: re-queue a job whose lease expired (its worker died or stalled).
-- Checked again here, atomically: a heartbeat may have renewed the lease since
-- it was listed. The job goes to the head of the ready list; the old holder's
-- token no longer matches once the job is claimed again.
-- KEYS: job, leases, ready
-- ARGV: id
-- Returns 'requeued' | 'alive' (lease still valid) | 'dropped' (no running job behind the lease).
local job, leases, ready = KEYS[1], KEYS[2], KEYS[3]
local id = ARGV[1]

local now = now_ms()
local expiry = redis.call('ZSCORE', leases, id)
if not expiry or tonumber(expiry) > now then
  return 'alive'
end
redis.call('ZREM', leases, id)
local held = redis.call('HMGET', job, 'status', 'worker_id')
if held[1] ~= RUNNING then
  return 'dropped'
end
redis.call('HSET', job, 'status', PENDING, 'updated_at', int(now),
  'last_error', 'lease expired: worker ' .. (held[2] or '?') .. ' stopped renewing it')
redis.call('RPUSH', ready, id)
return 'requeued'

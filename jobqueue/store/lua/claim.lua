-- claim: turn a popped id into a RUNNING job under a lease.
-- The worker popped the id from `ready` into `popped` (BLMOVE); this takes it
-- out of `popped` and, if the job is still PENDING, starts a new attempt with a
-- new fencing token. An id the reaper already moved back is 'gone'; a cancelled
-- or expired job is skipped, so a stale id can never block the queue.
-- KEYS: job, popped, suspects, leases
-- ARGV: id, worker_id, lease_ms
-- Returns {'ok', field, value, ...} (the job hash) | {'gone'} | {'missing'} | {'skip', status}.
local job, popped, suspects, leases = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, worker_id, lease_ms = ARGV[1], ARGV[2], tonumber(ARGV[3])

if redis.call('LREM', popped, 1, id) == 0 then
  return {'gone'}
end
redis.call('HDEL', suspects, id)
local status = redis.call('HGET', job, 'status')
if not status then
  return {'missing'}
end
if status ~= PENDING then
  return {'skip', status}
end
local now = now_ms()
redis.call('HINCRBY', job, 'attempt', 1)
redis.call('HINCRBY', job, 'lease_token', 1)
redis.call('HSET', job, 'status', RUNNING, 'started_at', int(now), 'updated_at', int(now),
  'worker_id', worker_id)
redis.call('ZADD', leases, int(now + lease_ms), id)
local fields = redis.call('HGETALL', job)
table.insert(fields, 1, 'ok')
return fields

-- cancel: end a PENDING or RUNNING job as CANCELLED.
-- A pending job leaves the schedule; if its id is already in the ready list, the
-- claim skips it. A running job loses its lease: the worker's next heartbeat
-- reports it lost, the handler is cancelled, and its result is refused.
-- Cancelling a cancelled job is a no-op, so retries are safe.
-- include: common, outcomes
-- KEYS: job, scheduled, leases
-- ARGV: id, retention_ms
-- Returns {OK, previous status} | {NOT_FOUND} | {WRONG_STATE, status}.
local id, retention = ARGV[1], ARGV[2]

local status = redis.call('HGET', job, 'status')
if not status then
  return {NOT_FOUND}
end
if status == CANCELLED then
  return {OK, status}
end
if status ~= PENDING and status ~= RUNNING then
  return {WRONG_STATE, status}
end
local now = int(now_ms())
redis.call('ZREM', scheduled, id)
redis.call('ZREM', leases, id)
redis.call('HSET', job, 'status', CANCELLED, 'finished_at', now, 'updated_at', now)
redis.call('PEXPIRE', job, retention)
return {OK, status}

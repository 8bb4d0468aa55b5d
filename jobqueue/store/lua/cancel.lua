-- cancel: end a PENDING or RUNNING job as CANCELLED.
-- A pending job leaves the schedule; if its id is already in the ready list, the
-- claim skips it. A running job loses its lease: the worker's next heartbeat
-- reports it lost, the handler is cancelled, and its result is refused.
-- Cancelling a cancelled job is a no-op, so retries are safe.
-- include: common, outcomes, changes, unique
-- KEYS: job, scheduled, leases, live, cancelled, stats, events
-- ARGV: id, retention_ms
-- Returns {OK, previous status} | {NOT_FOUND} | {WRONG_STATE, status}.
local id, retention = ARGV[1], ARGV[2]

local state = redis.call('HMGET', job, 'status', 'type', 'attempt', 'unique_lock')
local status = state[1]
if not status then
  return {NOT_FOUND}
end
if status == CANCELLED then
  return {OK, status}
end
if status ~= PENDING and status ~= RUNNING then
  return {WRONG_STATE, status}
end
local c = changes(now_ms(), stats)
local now = int(c.now)
redis.call('ZREM', scheduled, id)
redis.call('ZREM', leases, id)
redis.call('HSET', job, 'status', CANCELLED, 'finished_at', now, 'updated_at', now)
redis.call('PEXPIRE', job, retention)
finished(c, live, cancelled, {id}, retention)
release_unique(state[4], id)
if status == PENDING then
  c.pending = -1
else
  c.running = -1
end
c.cancelled = 1
changed(c, id, CANCELLED, state[3])
commit(c, events, state[2] or '', '', '')
return {OK, status}

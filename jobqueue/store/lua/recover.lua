-- recover: take a RUNNING job back from a worker that died or stalled.
-- Two triggers: its lease expired (mode 'lease'), or its worker's registry
-- entry expired (mode = that worker's id: the job must still be that worker's).
-- Both are checked again here, atomically, since a heartbeat may have come in
-- since the reaper looked. A job with attempts left goes to the head of the
-- ready list; one that used its last attempt ends FAILED (a crash counts as an
-- attempt, so a job that kills its worker cannot loop forever); it keeps its
-- priority (include/priority.lua). The old
-- holder's token is dead either way.
-- include: common, outcomes, dead_letter, changes, unique, priority
-- KEYS: job, leases, ready, failed, workers, live, stats, events, prio
-- ARGV: id, mode ('lease' or a worker id), retention_ms
-- Returns {RECOVERED} | {DEAD_LETTERED} | {ALIVE} | {MOVED} | {NOT_RUNNING}.
local id, mode, retention = ARGV[1], ARGV[2], ARGV[3]

local c = changes(now_ms(), stats)
local now = c.now
local state = redis.call('HMGET', job, 'status', 'worker_id', 'attempt', 'max_attempts', 'type', 'unique_lock',
  'priority')
local reason
if mode == 'lease' then
  local expiry = redis.call('ZSCORE', leases, id)
  if not expiry or tonumber(expiry) > now then
    return {ALIVE}
  end
  reason = 'lease expired: worker ' .. (state[2] or '?') .. ' stopped renewing it'
else
  if state[2] ~= mode then
    return {MOVED}
  end
  local seen = redis.call('ZSCORE', workers, mode)
  if seen and tonumber(seen) > now then
    return {ALIVE}
  end
  reason = 'worker ' .. mode .. ' died (no heartbeat)'
end
redis.call('ZREM', leases, id)
if state[1] ~= RUNNING then
  return {NOT_RUNNING}
end
local attempt = state[3] or '0'
local reply = {RECOVERED}
if tonumber(attempt) >= tonumber(state[4] or 1) then
  reason = reason .. ' during its last attempt'
  dead_letter(c, job, live, failed, id, reason, attempt, retention)
  release_unique(state[6], id)
  reply = {DEAD_LETTERED}
else
  redis.call('HSET', job, 'status', PENDING, 'updated_at', int(now), 'last_error', reason,
    'last_error_attempt', attempt)
  local l = lines(ready, prio)
  line_up(l, id, priority_of(state[7]), true)
  wake_idle(l)
  c.running, c.pending = -1, 1
  changed(c, id, PENDING, attempt)
end
commit(c, events, state[5] or '', state[2] or '', reason)
return reply

-- recover: take a RUNNING job back from a worker that died or stalled.
-- Two triggers: its lease expired (mode 'lease'), or its worker's registry
-- entry expired (mode = that worker's id: the job must still be that worker's).
-- Both are checked again here, atomically, since a heartbeat may have come in
-- since the reaper looked. A job with attempts left goes to the head of the
-- ready list; one that used its last attempt ends FAILED (a crash counts as an
-- attempt, so a job that kills its worker cannot loop forever). The old
-- holder's token is dead either way.
-- include: common, outcomes, dead_letter
-- KEYS: job, leases, ready, failed, workers
-- ARGV: id, mode ('lease' or a worker id), retention_ms
-- Returns {RECOVERED} | {DEAD_LETTERED} | {ALIVE} | {MOVED} | {NOT_RUNNING}.
local id, mode, retention = ARGV[1], ARGV[2], ARGV[3]

local now = now_ms()
local state = redis.call('HMGET', job, 'status', 'worker_id', 'attempt', 'max_attempts')
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
if tonumber(state[3] or 0) >= tonumber(state[4] or 1) then
  dead_letter(job, failed, id, now, reason .. ' during its last attempt', state[3] or 0, retention)
  return {DEAD_LETTERED}
end
redis.call('HSET', job, 'status', PENDING, 'updated_at', int(now), 'last_error', reason,
  'last_error_attempt', state[3] or 0)
redis.call('RPUSH', ready, id)
return {RECOVERED}

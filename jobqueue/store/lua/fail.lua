-- fail: record a failed run, from the lease holder only; retry or dead-letter.
-- With attempts left and a retry delay (>= 0), the job goes back to PENDING in
-- the schedule at now + delay, its error kept in last_error and the attempt it
-- ended in last_error_attempt (as when it ends FAILED). Otherwise (no
-- attempts left, or delay -1: a permanent error) it ends FAILED in the failed
-- index. Fenced like round.lua's records; a replay of the same call changes nothing.
-- include: common, outcomes, schedule, dead_letter, changes, unique
-- KEYS: job, leases, held, scheduled, failed, live, stats, events
-- ARGV: id, lease_token, error, retry delay ms (-1: do not retry), retention_ms, channel
-- Returns {RETRYING, execution_time_ms} | {DEAD_LETTERED} | {STALE, the job's status or ''}.
local id, token, err, delay, retention, channel =
  ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6]

local state = redis.call('HMGET', job, 'status', 'lease_token', 'attempt', 'max_attempts', 'type',
  'last_error', 'execution_time_ms', 'worker_id', 'unique_lock', 'priority')
if state[2] == token and state[6] == err then
  if state[1] == FAILED then
    return {DEAD_LETTERED}
  end
  if state[1] == PENDING then
    return {RETRYING, tonumber(state[7])}
  end
end
if state[1] ~= RUNNING or state[2] ~= token then
  return {STALE, state[1] or ''}
end
local c = changes(now_ms(), stats)
local attempt = state[3] or '0'
redis.call('ZREM', leases, id)
redis.call('SREM', held, id)
local reply = {DEAD_LETTERED}
if delay >= 0 and tonumber(attempt) < tonumber(state[4] or 1) then
  local at = c.now + delay
  redis.call('HSET', job, 'status', PENDING, 'last_error', err, 'last_error_attempt', attempt,
    'execution_time_ms', int(at), 'updated_at', int(c.now))
  schedule(scheduled, id, at, channel, state[5], priority_of(state[10]))
  c.running, c.pending, c.retried = -1, 1, 1
  changed(c, id, PENDING, attempt)
  reply = {RETRYING, at}
else
  dead_letter(c, job, live, failed, id, err, attempt, retention)
  release_unique(state[9], id)
end
commit(c, events, state[5] or '', state[8] or '', err)
return reply

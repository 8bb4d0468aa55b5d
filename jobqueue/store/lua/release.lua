-- release: a worker that shuts down hands a running job back.
-- The job becomes PENDING, next in line at its priority (include/priority.lua), and the interrupted run
-- does not count as an attempt. Back at attempt 0, a job with an expiry is
-- subject to it again (include/expire.lua): its id goes back into `expiring`.
-- include: common, outcomes, changes, priority
-- KEYS: job, leases, ready, held, stats, events, prio, expiring
-- ARGV: id, lease_token
-- Returns {OK} | {STALE, the job's status or ''}.
local id, token = ARGV[1], ARGV[2]

local state = redis.call('HMGET', job, 'status', 'lease_token', 'type', 'worker_id', 'priority')
if state[1] ~= RUNNING or state[2] ~= token then
  return {STALE, state[1] or ''}
end
local c = changes(now_ms(), stats)
redis.call('HSET', job, 'status', PENDING, 'updated_at', int(c.now))
local attempt = redis.call('HINCRBY', job, 'attempt', -1)
if attempt == 0 then
  local expires = redis.call('HGET', job, 'expires_at_ms')
  if expires then
    redis.call('ZADD', expiring, expires, id)
  end
end
redis.call('ZREM', leases, id)
redis.call('SREM', held, id)
local l = lines(ready, prio)
line_up(l, id, priority_of(state[5]), true)
wake_idle(l)
c.running, c.pending = -1, 1
changed(c, id, PENDING, int(attempt))
commit(c, events, state[3] or '', state[4] or '', '')
return {OK}

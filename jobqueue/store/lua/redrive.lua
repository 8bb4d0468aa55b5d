-- redrive: run a FAILED, CANCELLED or EXPIRED job again (the RetryJob RPC).
-- It becomes PENDING and due now (at the back of its priority's line), with
-- attempts counted from zero; it leaves its finished index, is unfinished again
-- in `live`, and no longer expires (neither its hash nor its expiry before
-- start: a redrive is a deliberate new start).
-- last_error keeps the previous error, and last_error_attempt the attempt it
-- ended (now above `attempt`). A job enqueued with a unique key does not take it
-- again: it released it when it ended, and may have a successor that holds it.
-- include: common, outcomes, changes, priority
-- KEYS: job, failed, cancelled, ready, live, stats, events, prio, expired
-- ARGV: id
-- Returns {OK} | {NOT_FOUND} | {WRONG_STATE, status}.
local id = ARGV[1]

local state = redis.call('HMGET', job, 'status', 'type', 'created_at', 'priority')
local status = state[1]
if not status then
  return {NOT_FOUND}
end
local index = ({[FAILED] = failed, [CANCELLED] = cancelled, [EXPIRED] = expired})[status]
if not index then
  return {WRONG_STATE, status}
end
local c = changes(now_ms(), stats)
local now = int(c.now)
redis.call('HSET', job, 'status', PENDING, 'attempt', 0, 'execution_time_ms', now, 'updated_at', now)
redis.call('HDEL', job, 'finished_at', 'expires_at_ms')
redis.call('PERSIST', job)
redis.call('ZREM', index, id)
redis.call('ZADD', live, state[3] or now, id)
local l = lines(ready, prio)
line_up(l, id, priority_of(state[4]), false)
wake_idle(l)
c.pending = 1
changed(c, id, PENDING, '0')
commit(c, events, state[2] or '', '', '')
return {OK}

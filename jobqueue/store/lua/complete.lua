-- complete: record successful runs, a batch at a time, from the lease holder only.
-- The fencing token must be the current one: a worker whose lease expired and
-- was taken over, or whose job was cancelled, cannot overwrite the outcome.
-- Recording one twice with the same token is a no-op, so a caller may retry
-- after losing the reply.
-- KEYS: leases, held, job 1, ..., job N
-- ARGV: retention_ms, id 1, lease_token 1, ..., id N, lease_token N
-- Returns, per job: 'ok' | the current status ('' if none): a stale lease.
local leases, held, retention = KEYS[1], KEYS[2], ARGV[1]
local now = int(now_ms())
local results = {}
for i = 3, #KEYS do
  local job, id, token = KEYS[i], ARGV[2 * i - 4], ARGV[2 * i - 3]
  local state = redis.call('HMGET', job, 'status', 'lease_token')
  if state[2] == token and (state[1] == RUNNING or state[1] == COMPLETED) then
    if state[1] == RUNNING then
      redis.call('HSET', job, 'status', COMPLETED, 'finished_at', now, 'updated_at', now)
      redis.call('ZREM', leases, id)
      redis.call('SREM', held, id)
      redis.call('PEXPIRE', job, retention)
    end
    results[#results + 1] = 'ok'
  else
    results[#results + 1] = state[1] or ''
  end
end
return results

-- complete: record successful runs, a batch at a time, from the lease holder
-- only; then take up to `take` ready ids into `popped`, oldest first, for the
-- slots those runs freed. A busy worker so records one batch and fetches the
-- next in one round trip (it claims them in one more); with no runs it only
-- takes, and with `take` 0 it only records. Only an idle worker blocks (BLMOVE).
-- The fencing token must be the current one: a worker whose lease expired and
-- was taken over, or whose job was cancelled, cannot overwrite the outcome.
-- Recording one twice with the same token is a no-op, so a caller may retry
-- after losing the reply. Ids taken by a worker that dies before its claim are
-- returned by sweep_popped.
-- KEYS: leases, held, ready, popped, job 1, ..., job N
-- ARGV: retention_ms, take, id 1, lease_token 1, ..., id N, lease_token N
-- Returns {outcomes, taken ids}; an outcome per job: 'ok' | the current status
-- ('' if none): a stale lease.
local leases, held, ready, popped = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local retention, limit = ARGV[1], tonumber(ARGV[2])
local now = int(now_ms())
local outcomes = {}
for i = 5, #KEYS do
  local job, id, token = KEYS[i], ARGV[2 * i - 7], ARGV[2 * i - 6]
  local state = redis.call('HMGET', job, 'status', 'lease_token')
  if state[2] == token and (state[1] == RUNNING or state[1] == COMPLETED) then
    if state[1] == RUNNING then
      redis.call('HSET', job, 'status', COMPLETED, 'finished_at', now, 'updated_at', now)
      redis.call('ZREM', leases, id)
      redis.call('SREM', held, id)
      redis.call('PEXPIRE', job, retention)
    end
    outcomes[#outcomes + 1] = 'ok'
  else
    outcomes[#outcomes + 1] = state[1] or ''
  end
end
local taken = {}
if limit > 0 then
  taken = redis.call('RPOP', ready, limit) or {}
  if #taken > 0 then
    redis.call('LPUSH', popped, unpack(taken))
  end
end
return {outcomes, taken}

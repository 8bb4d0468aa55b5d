-- heartbeat: a worker says it is alive and extends the leases it still holds.
-- The worker's entry in the type's `workers` registry moves to now + liveness;
-- a reaper that finds it past that takes the worker's jobs back at once,
-- without waiting for their leases. A lease is still held while the job is
-- RUNNING with the worker's token; its entry is (re)written, so a running job
-- can never be left without one.
-- include: common
-- KEYS: leases, workers, held, ...the jobs held
-- ARGV: lease_ms, worker_id, liveness_ms, id 1, token 1, ..., id N, token N
-- Returns {joined, id, token, status, ...}: joined is 1 when the worker was not in
-- the registry (its first beat, or it was forgotten after a stall, or Redis lost its
-- data), so that it writes its ListWorkers entry again; then the id, token and status
-- of each lease the worker lost (the job was cancelled, or its lease expired and it
-- was recovered): those handlers must stop. The token tells which run: a handler that
-- ignores its cancellation may still run when its worker claims the job again.
local now = now_ms()
local lease_until = int(now + tonumber(ARGV[1]))
local lost = {redis.call('ZADD', workers, int(now + tonumber(ARGV[3])), ARGV[2])}
for i = 1, #KEYS - FIXED_KEYS do
  local id, token = ARGV[2 + 2 * i], ARGV[3 + 2 * i]
  local state = redis.call('HMGET', KEYS[FIXED_KEYS + i], 'status', 'lease_token')
  if state[1] == RUNNING and state[2] == token then
    redis.call('ZADD', leases, lease_until, id)
  else
    redis.call('SREM', held, id)
    lost[#lost + 1] = id
    lost[#lost + 1] = token
    lost[#lost + 1] = state[1] or ''
  end
end
return lost

-- worker_held: what ListWorkers shows of a worker for one of its types (a read: no
-- transition): its liveness deadline, and the jobs it holds. `held` may keep stale
-- ids (a job recovered, cancelled or finished after a lost lease: recovery checks
-- each job), so a held job is counted only if it is RUNNING under this worker. The
-- set is bounded by the worker's concurrency and prefetch, plus the losses one
-- heartbeat finds; past `look` ids, its size is returned as it is. The job keys are
-- built from the ids (the type's hash tag: this script's slot).
-- include: common
-- KEYS: workers, held
-- ARGV: worker id, job key prefix, look
-- Returns {now, the liveness deadline (-1: none), jobs held}.
local worker_id, prefix, look = ARGV[1], ARGV[2], tonumber(ARGV[3])
local deadline = tonumber(redis.call('ZSCORE', workers, worker_id)) or -1
local size = redis.call('SCARD', held)
local count = size
if size <= look then
  count = 0
  for _, id in ipairs(redis.call('SMEMBERS', held)) do
    local job = redis.call('HMGET', prefix .. id, 'status', 'worker_id')
    if job[1] == RUNNING and job[2] == worker_id then
      count = count + 1
    end
  end
end
return {now_ms(), deadline, count}

-- rebuild_counts: set a type's live counters in `stats` from its indexes, in one
-- atomic call (`jobqueue rebuild`, after rebuild_jobs repaired the indexes): running
-- = the jobs in `leases` whose job is RUNNING (a claim adds a job there in the script
-- that makes it RUNNING; every end of a run removes it), pending = the size of
-- `live` less those. Its cost is the type's running jobs, not its backlog. Only
-- `pending` and `running` are written: the totals and minute buckets are history.
-- The job keys are built from the ids of `leases` (the type's hash tag: this slot).
-- include: common
-- KEYS: stats, live, leases
-- ARGV: type, job key prefix, dry ('1': read only)
-- Returns {pending stored, running stored, pending counted, running counted}.
local job_type, prefix, dry = ARGV[1], ARGV[2], ARGV[3] == '1'
local running = 0
for _, id in ipairs(redis.call('ZRANGE', leases, 0, -1)) do
  local job = redis.call('HMGET', prefix .. id, 'type', 'status')
  if job[1] == job_type and job[2] == RUNNING then
    running = running + 1
  end
end
local pending = redis.call('ZCARD', live) - running
local stored = redis.call('HMGET', stats, 'pending', 'running')
local pending_was, running_was = tonumber(stored[1]) or 0, tonumber(stored[2]) or 0
if not dry and (pending_was ~= pending or running_was ~= running) then
  redis.call('HSET', stats, 'pending', int(pending), 'running', int(running))
end
return {pending_was, running_was, pending, running}

-- round: a busy worker's round trip. It records the worker's successful runs,
-- claims the ids it took in its previous round, then takes up to `take` ready ids
-- into `popped`, in the order they run (include/priority.lua's `take`: higher
-- priorities first, FIFO within one), for the round after. A busy worker so makes one
-- round trip per batch of jobs; with `take` 0 it only records (and claims), with
-- no runs it only claims and takes. Taken ids are claimed one round later because
-- a script may touch only the keys it declares, and a job's key is known once its
-- id is. Only an idle worker blocks (BLMOVE), then claims the id alone (claim.lua).
-- Recording: from the lease holder only. The fencing token must be the current
-- one: a worker whose lease expired and was taken over, or whose job was
-- cancelled, cannot overwrite the outcome, nor write its result or progress. Recording one twice with the same
-- token is a no-op, so a caller may retry after losing the reply. Claiming: as
-- claim.lua (claim_popped). Ids taken by a worker that dies, or never claims
-- them, are swept back by sweep_popped.
-- include: claim_popped, changes, unique, priority
-- KEYS: leases, held, ready, popped, suspects, live, completed, stats, events, prio, expired, ...the jobs run, ...the jobs to claim
-- ARGV: retention_ms, take, N, worker_id, lease_ms, default max_attempts, type,
--       id 1, lease_token 1, result 1, progress 1, progress message 1, ..., (the
--       same for run N) (a result: the handler's return value, '' for none; a
--       progress: the run's last set_progress, as progress.lua writes it, '' for
--       none), id 1, ..., id M, then the names of the job hash fields a claim
--       returns (only with M > 0)
-- Returns {records, taken ids, claims}: a record per run, {OK} | {STALE, the
-- job's status or ''}; a claim per id, as claim_popped's. A paused type's round
-- takes nothing.
local retention, limit, runs, worker_id = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local c = changes(now_ms(), stats)
local now = int(c.now)
local records = {}
local done = {}
for i = 1, runs do
  local job, id, token, result = KEYS[FIXED_KEYS + i], ARGV[3 + 5 * i], ARGV[4 + 5 * i], ARGV[5 + 5 * i]
  local progress = ARGV[6 + 5 * i]
  local state = redis.call('HMGET', job, 'status', 'lease_token', 'attempt', 'unique_lock')
  if state[2] == token and (state[1] == RUNNING or state[1] == COMPLETED) then
    if state[1] == RUNNING then
      if result == '' and progress == '' then  -- the handler returned nothing, reported nothing
        redis.call('HSET', job, 'status', COMPLETED, 'finished_at', now, 'updated_at', now)
      else
        local fields = {'status', COMPLETED, 'finished_at', now, 'updated_at', now}
        if result ~= '' then
          fields[#fields + 1], fields[#fields + 2] = 'result', result
        end
        if progress ~= '' then  -- as progress.lua writes it
          for _, v in ipairs({'progress', progress, 'progress_message', ARGV[7 + 5 * i], 'progress_at', now,
              'progress_token', token}) do
            fields[#fields + 1] = v
          end
        end
        redis.call('HSET', job, unpack(fields))
      end
      redis.call('PEXPIRE', job, retention)
      release_unique(state[4], id)
      done[#done + 1] = id
      changed(c, id, COMPLETED, state[3])
    end
    records[#records + 1] = {OK}
  else
    records[#records + 1] = {STALE, state[1] or ''}
  end
end
if #done > 0 then
  redis.call('ZREM', leases, unpack(done))
  redis.call('SREM', held, unpack(done))
  finished(c, live, completed, done, retention)
  c.running = c.running - #done
  c.completed = #done
end
local claims = {}
local first_claim = FIXED_KEYS + 1 + runs
if #KEYS >= first_claim then
  local count = #KEYS - first_claim + 1
  local ids = 8 + 5 * runs
  local w = claimer(c, popped, suspects, leases, held, ready, worker_id, ARGV[5], ARGV[6],
    {unpack(ARGV, ids + count)}, prio, live, expired, retention)
  for i = 0, count - 1 do
    claims[#claims + 1] = claim_popped(w, KEYS[first_claim + i], ARGV[ids + i])
  end
  claimed(w)
end
local taken = {}
if limit > 0 and not c.paused then
  taken = take(ready, prio, limit)
  if #taken > 0 then
    redis.call('LPUSH', popped, unpack(taken))
  end
end
commit(c, events, ARGV[7], worker_id, '')
return {records, taken, claims}

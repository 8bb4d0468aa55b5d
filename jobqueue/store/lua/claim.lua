-- claim: turn popped ids into RUNNING jobs under a lease, a batch at a time
-- (claim_popped). An idle worker claims the id its blocking pop (BLMOVE ready ->
-- popped) brought, alone, at once; a busy worker claims in its rounds (round.lua).
-- include: claim_popped, changes
-- KEYS: popped, suspects, leases, held, ready, stats, events, prio, live, expired, ...the jobs
-- ARGV: worker_id, lease_ms, default max_attempts, type, retention_ms, id 1, ..., id N,
--       then the names of the job hash fields to return
-- Returns, per id, what claim_popped returns.
local c = changes(now_ms(), stats)
local count = #KEYS - FIXED_KEYS
local w = claimer(c, popped, suspects, leases, held, ready, ARGV[1], ARGV[2], ARGV[3],
  {unpack(ARGV, 6 + count)}, prio, live, expired, ARGV[5])
local results = {}
for i = 1, count do
  results[i] = claim_popped(w, KEYS[FIXED_KEYS + i], ARGV[5 + i])
end
claimed(w)
commit(c, events, ARGV[4], ARGV[1], '')
return results

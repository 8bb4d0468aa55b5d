-- claim: turn popped ids into RUNNING jobs under a lease, a batch at a time
-- (claim_popped). An idle worker claims the id its blocking pop (BLMOVE ready ->
-- popped) brought, alone, at once; a busy worker claims in its rounds (round.lua).
-- include: claim_popped
-- KEYS: popped, suspects, leases, held, ...the jobs
-- ARGV: worker_id, lease_ms, default max_attempts, id 1, ..., id N, then the
--       names of the job hash fields to return
-- Returns, per id, what claim_popped returns.
local w = claimer(popped, suspects, leases, held, ARGV[1], ARGV[2], ARGV[3])
local count = #KEYS - FIXED_KEYS
local fields = {unpack(ARGV, 4 + count)}
local results = {}
for i = 1, count do
  results[i] = claim_popped(w, KEYS[FIXED_KEYS + i], ARGV[3 + i], fields)
end
return results

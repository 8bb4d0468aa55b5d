-- claim: turn popped ids into RUNNING jobs under a lease, a batch at a time
-- (claim_popped in _prelude.lua). The worker moved the ids from `ready` into
-- `popped` (BLMOVE, or a take of complete.lua, which also claims).
-- KEYS: popped, suspects, leases, held, job 1, ..., job N
-- ARGV: worker_id, lease_ms, default max_attempts, id 1, ..., id N, then the
-- names of the job hash fields to return
-- Returns, per id, what claim_popped returns.
local w = claimer(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[3])
local fields = {unpack(ARGV, #KEYS)}
local results = {}
for i = 5, #KEYS do
  results[#results + 1] = claim_popped(w, KEYS[i], ARGV[i - 1], fields)
end
return results

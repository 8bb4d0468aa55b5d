-- read_jobs: the same fields of many jobs of one partition, in one call (a read,
-- no transition: ListJobs reads a page's jobs with it). One script call costs
-- the client far less than a pipeline of one HMGET per job.
-- KEYS: ...the jobs (of one partition)
-- ARGV: the field names
-- Returns, per job in KEYS order, its values of the fields (all nil: the job is gone).
local values = {}
for i = FIXED_KEYS + 1, #KEYS do
  values[#values + 1] = redis.call('HMGET', KEYS[i], unpack(ARGV))
end
return values

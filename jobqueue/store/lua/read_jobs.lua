-- read_jobs: the same fields of many jobs of one partition, in one call (a read,
-- no transition: ListJobs reads a page's jobs with it). One script call costs
-- the client far less than a pipeline of one HMGET per job.
-- include: listed
-- KEYS: ...the jobs (of one partition)
-- ARGV: how many fields are read of every job, how many of those are markers
--   (include/listed), the field names
-- Returns, packed by cmsgpack (as page.lua), per job in KEYS order, its values of the
-- fields (false: not set; all false: the job is gone).
local always, markers = tonumber(ARGV[1]), tonumber(ARGV[2])
local fields, dependent = {unpack(ARGV, 3, 2 + always)}, {unpack(ARGV, 3 + always)}
local values = {}
for i = FIXED_KEYS + 1, #KEYS do
  values[#values + 1] = listed_values(KEYS[i], fields, markers, dependent)
end
return cmsgpack.pack(values)

-- rebuild_jobs: put each job of a batch in the index its status names, and in no
-- other (`jobqueue rebuild`, store/rebuild.py: a maintenance tool, not a transition).
-- In one atomic call it reads each job's hash and repairs the job's membership of
-- the type's five indexes: `live` (PENDING and RUNNING, scored by created_at) and
-- the finished statuses' (scored by finished_at); an id whose job is gone, or is of
-- another type, leaves all five. Nothing else changes: no counter, no event, no
-- line or schedule. The job keys are built from the ids (the caller read them from
-- this partition's job keys or indexes): they carry the type's hash tag, so they
-- are on this script's slot.
-- With `orphans`, a job of the type that exists is left alone: the ids come from
-- an index, and the pass over the job keys repairs those jobs.
-- include: common
-- KEYS: live, completed, failed, cancelled, expired
-- ARGV: type, job key prefix, dry ('1': count only, change nothing), orphans ('1' or '0'), ids...
-- Returns {added to each index (KEYS order, 5), removed from each (5), rescored,
-- PENDING jobs seen, RUNNING jobs seen}.
local job_type, prefix, dry, orphans = ARGV[1], ARGV[2], ARGV[3] == '1', ARGV[4] == '1'
local indexes = {live, completed, failed, cancelled, expired}
local INDEX_OF = {[PENDING] = 1, [RUNNING] = 1, [COMPLETED] = 2, [FAILED] = 3, [CANCELLED] = 4,
  [EXPIRED] = 5}
local ids = {}
for i = 5, #ARGV do
  ids[#ids + 1] = ARGV[i]
end
local counts = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
if #ids == 0 then
  return counts
end
local scores = {}
for k, index in ipairs(indexes) do
  scores[k] = redis.call('ZMSCORE', index, unpack(ids))
end
local adds, removes = {{}, {}, {}, {}, {}}, {{}, {}, {}, {}, {}}
for i, id in ipairs(ids) do
  local job = redis.call('HMGET', prefix .. id, 'type', 'status', 'created_at', 'finished_at', 'updated_at')
  local ours = job[1] == job_type and INDEX_OF[job[2]] ~= nil
  if not (orphans and ours) then
    local target, score = 0, nil
    if ours then
      target = INDEX_OF[job[2]]
      if target == 1 then
        score = job[3]
        if job[2] == PENDING then counts[12] = counts[12] + 1 else counts[13] = counts[13] + 1 end
      else
        score = job[4] or job[5] or job[3]
      end
      score = tonumber(score) or 0
    end
    for k = 1, 5 do
      local stored = scores[k][i]
      if k == target then
        if not stored or tonumber(stored) ~= score then
          local add = adds[k]
          add[#add + 1], add[#add + 2] = int(score), id
          if stored then counts[11] = counts[11] + 1 else counts[k] = counts[k] + 1 end
        end
      elseif stored then
        removes[k][#removes[k] + 1] = id
        counts[5 + k] = counts[5 + k] + 1
      end
    end
  end
end
if not dry then
  for k, index in ipairs(indexes) do
    if #removes[k] > 0 then
      redis.call('ZREM', index, unpack(removes[k]))
    end
    if #adds[k] > 0 then
      redis.call('ZADD', index, unpack(adds[k]))
    end
  end
end
return counts

-- forget_worker: drop a worker from the registry, with its held set: a dead
-- one once its jobs were recovered (a worker that came back meanwhile is kept),
-- or, when it is leaving, one that shuts down gracefully.
-- include: common, outcomes
-- KEYS: workers, held
-- ARGV: worker_id, leaving ('1' or '0')
-- Returns {OK} if forgotten, {ALIVE} if it checked in again meanwhile.
local worker_id, leaving = ARGV[1], ARGV[2]
local seen = redis.call('ZSCORE', workers, worker_id)
if leaving ~= '1' and seen and tonumber(seen) > now_ms() then
  return {ALIVE}
end
redis.call('ZREM', workers, worker_id)
redis.call('DEL', held)
return {OK}

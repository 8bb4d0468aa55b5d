-- forget_worker: drop a worker from the registry, with its held set: a dead
-- one once its jobs were recovered (a worker that came back meanwhile is kept),
-- or, with force, one that leaves after a graceful shutdown.
-- KEYS: workers, held (of that worker)
-- ARGV: worker_id, force ('1' or '0')
-- Returns 1 if forgotten, 0 if it is alive again.
local seen = redis.call('ZSCORE', KEYS[1], ARGV[1])
if ARGV[2] ~= '1' and seen and tonumber(seen) > now_ms() then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return 1

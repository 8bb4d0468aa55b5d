-- delete: remove a finished job for good (DeleteJobs): its hash, its entry in
-- its finished index, and its idempotency key if that still points at it (the
-- key may be used again at once), and its unique key likewise. A job not finished is refused; no counter
-- changes (the finished counts are the indexes' sizes) and no event is written.
-- include: common, outcomes, unique
-- KEYS: job, completed, failed, cancelled, expired, ...its idempotency key (when it has one)
-- ARGV: id
-- Returns {OK, status} | {NOT_FOUND} | {WRONG_STATE, status}.
local id = ARGV[1]

local state = redis.call('HMGET', job, 'status', 'unique_lock')
local status = state[1]
if not status then
  return {NOT_FOUND}
end
local index = ({[COMPLETED] = completed, [FAILED] = failed, [CANCELLED] = cancelled,
  [EXPIRED] = expired})[status]
if not index then
  return {WRONG_STATE, status}
end
redis.call('DEL', job)
redis.call('ZREM', index, id)
local idempotency = KEYS[FIXED_KEYS + 1]
if idempotency and redis.call('GET', idempotency) == id then
  redis.call('DEL', idempotency)
end
release_unique(state[2], id)
return {OK, status}

-- queue_stats: one type's counts, as GetQueueStats shows them (a read: no
-- transition). The counters, the minute buckets and `paused` are `stats` as it
-- is (the caller picks the buckets: a loop here would cost Redis more than all
-- the rest); the finished counts are the sizes of the finished indexes within
-- retention.
-- The oldest ready job is the first PENDING and due one from the right end of
-- `ready`, looking at most `look` ids (older stale copies of cancelled or
-- rescheduled jobs are skipped). Their job hashes cannot be declared (the ids
-- are known only here); they carry the type's hash tag, so they live on this
-- script's slot.
-- The other priority levels (`prio`, include/priority.lua) are looked at the
-- same way, from the front of each level; the oldest of all counts.
-- include: common, priority
-- KEYS: stats, scheduled, ready, completed, failed, cancelled, workers, prio, expired
-- ARGV: retention_ms, job key prefix ("P:{pppp}:job:"), look
-- Returns {now, {stats as HGETALL has it}, scheduled, completed, failed,
-- cancelled, oldest_ready_age_ms, {live worker ids}, expired}.
local now = now_ms()
local since = '(' .. int(now - tonumber(ARGV[1]))
local prefix, look = ARGV[2], tonumber(ARGV[3])

local oldest = 0
-- The age of the first PENDING and due job of `ids` (in the order they run), if older.
local function older(ids, from, to, step)
  for i = from, to, step do
    local job = redis.call('HMGET', prefix .. ids[i], 'status', 'execution_time_ms')
    local due = tonumber(job[2])
    if job[1] == PENDING and due and due <= now then
      oldest = math.max(oldest, now - due)
      return
    end
  end
end
local ids = redis.call('LRANGE', ready, -look, -1)
older(ids, #ids, 1, -1)
if redis.call('EXISTS', prio) == 1 then
  for p = 1, 9 do
    if p ~= DEFAULT_PRIORITY then
      local middle = (9 - p) * BAND
      ids = redis.call('ZRANGE', prio, int(middle - HALF_BAND), '(' .. int(middle + HALF_BAND), 'BYSCORE',
        'LIMIT', 0, look)
      older(ids, 1, #ids, 1)
    end
  end
end

return {
  now,
  redis.call('HGETALL', stats),
  redis.call('ZCARD', scheduled),
  redis.call('ZCOUNT', completed, since, '+inf'),
  redis.call('ZCOUNT', failed, since, '+inf'),
  redis.call('ZCOUNT', cancelled, since, '+inf'),
  oldest,
  redis.call('ZRANGE', workers, '(' .. int(now), '+inf', 'BYSCORE'),
  redis.call('ZCOUNT', expired, since, '+inf'),
}

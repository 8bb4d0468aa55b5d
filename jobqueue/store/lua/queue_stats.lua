-- queue_stats: one type's counts, as GetQueueStats shows them (a read: no
-- transition). `pending` and `running` are the transition scripts' counters;
-- the finished counts are the sizes of the finished indexes within retention;
-- the per-minute counts are the buckets of the last hour whose minute is still
-- theirs (a slot of an older minute counts 0). The oldest ready job is the first
-- PENDING and due one from the right end of `ready`, looking at most `look` ids
-- (older stale copies of cancelled or rescheduled jobs are skipped). Their job
-- hashes cannot be declared (the ids are known only here); they carry the
-- type's hash tag, so they live on this script's slot.
-- include: common
-- KEYS: stats, scheduled, ready, completed, failed, cancelled, workers, paused
-- ARGV: retention_ms, job key prefix ("P:{pppp}:job:"), look
-- Returns {now, pending, running, scheduled, completed, failed, cancelled,
-- oldest_ready_age_ms, paused (0 or 1), {live worker ids}, {completed per
-- minute}, {failed per minute}}, the minutes oldest first.
local now = now_ms()
local since = '(' .. int(now - tonumber(ARGV[1]))
local prefix, look = ARGV[2], tonumber(ARGV[3])
local counters = redis.call('HMGET', stats, 'pending', 'running')

local minute = math.floor(now / 60000)
local fields = {}
for m = minute - 59, minute do
  local s = m % 60
  fields[#fields + 1] = 'm' .. s
  fields[#fields + 1] = 'c' .. s
  fields[#fields + 1] = 'f' .. s
end
local buckets = redis.call('HMGET', stats, unpack(fields))
local completed_per_minute, failed_per_minute = {}, {}
for i = 0, 59 do
  local theirs = buckets[3 * i + 1] == int(minute - 59 + i)
  completed_per_minute[i + 1] = theirs and tonumber(buckets[3 * i + 2] or 0) or 0
  failed_per_minute[i + 1] = theirs and tonumber(buckets[3 * i + 3] or 0) or 0
end

local oldest = 0
local ids = redis.call('LRANGE', ready, -look, -1)
for i = #ids, 1, -1 do
  local job = redis.call('HMGET', prefix .. ids[i], 'status', 'execution_time_ms')
  local due = tonumber(job[2])
  if job[1] == PENDING and due and due <= now then
    oldest = now - due
    break
  end
end

return {
  now,
  tonumber(counters[1] or 0),
  tonumber(counters[2] or 0),
  redis.call('ZCARD', scheduled),
  redis.call('ZCOUNT', completed, since, '+inf'),
  redis.call('ZCOUNT', failed, since, '+inf'),
  redis.call('ZCOUNT', cancelled, since, '+inf'),
  oldest,
  redis.call('EXISTS', paused),
  redis.call('ZRANGE', workers, '(' .. int(now), '+inf', 'BYSCORE'),
  completed_per_minute,
  failed_per_minute,
}

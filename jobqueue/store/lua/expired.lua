-- expired: members of a time-scored sorted set that are past due by the Redis
-- clock (read only, no transition): leases that expired, workers that stopped
-- heartbeating.
-- include: common
-- KEYS: ...a sorted set scored by Unix ms
-- ARGV: limit
return redis.call('ZRANGEBYSCORE', KEYS[FIXED_KEYS + 1], '-inf', int(now_ms()), 'LIMIT', 0, tonumber(ARGV[1]))

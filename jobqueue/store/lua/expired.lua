-- expired: members of a time-scored sorted set that are past due by the Redis
-- clock (read only): leases that expired, workers that stopped heartbeating.
-- KEYS: a sorted set scored by Unix ms
-- ARGV: limit
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', int(now_ms()), 'LIMIT', 0, tonumber(ARGV[1]))

-- expired_leases: the ids whose lease expired by the Redis clock (read only).
-- KEYS: leases
-- ARGV: limit
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', int(now_ms()), 'LIMIT', 0, tonumber(ARGV[1]))

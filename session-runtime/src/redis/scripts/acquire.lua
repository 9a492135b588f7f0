-- Takes the lease of one session and reads its record, in one step.
--
-- KEYS[1]  the record: the bare session id (tower-sessions-redis-store's key)
-- KEYS[2]  the lease: "{<id>}:lock", in the record's hash slot
-- ARGV[1]  the taker's token: random, never reused
-- ARGV[2]  the lease's lifetime, in milliseconds
--
-- Invariant: at most one token holds a session's lease, and for no longer than its lifetime
-- unless its holder renews it (renew.lua). The taker that gets the lease reads the record as
-- it is at that instant; while the lease holds, only that taker's writes (write.lua) change it.
--
-- Returns {1, record or false} when taken, {0, milliseconds the lease may still last} when not.
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, redis.call('GET', KEYS[1])}
end
return {0, redis.call('PTTL', KEYS[2])}

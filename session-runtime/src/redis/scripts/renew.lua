-- Extends a session's lease for its holder only.
--
-- KEYS[1]  the lease: "{<id>}:lock"
-- ARGV[1]  the holder's token
-- ARGV[2]  the new lifetime, in milliseconds from now
--
-- Invariant: a lease that lapsed, or that another token holds, is left alone: renewing never
-- revives a lost lease nor extends someone else's.
--
-- Returns 1 when extended, 0 when the lease is not the holder's any more.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0

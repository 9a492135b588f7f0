-- Writes a session's record for the holder of its lease only, and gives the lease back if
-- asked, in one step.
--
-- KEYS[1]  the record: the bare session id
-- KEYS[2]  the lease: "{<id>}:lock"
-- ARGV[1]  the writer's token
-- ARGV[2]  'save', 'delete' or 'none'
-- ARGV[3]  '1' to release the lease after writing, '0' to keep it
-- ARGV[4]  for 'save': the record, MessagePack as tower-sessions-redis-store encodes it
-- ARGV[5]  for 'save': its expiry, in Unix milliseconds (PXAT: the record ends at that instant)
--
-- Invariant (fencing): the record changes only while the writer's own lease holds. A holder
-- whose lease lapsed while it was paused or cut off, and that another writer may have taken
-- since, writes nothing and learns it: it can never overwrite a later holder's write. A save
-- is SET XX: a record deleted meanwhile is not brought back. Only the holder releases its
-- lease (compare-and-delete).
--
-- Returns 1 when the lease was the writer's (written, released if asked), 0 when it was not
-- (nothing written).
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
if ARGV[2] == 'save' then
  redis.call('SET', KEYS[1], ARGV[4], 'XX', 'PXAT', ARGV[5])
elseif ARGV[2] == 'delete' then
  redis.call('DEL', KEYS[1])
end
if ARGV[3] == '1' then
  redis.call('DEL', KEYS[2])
end
return 1

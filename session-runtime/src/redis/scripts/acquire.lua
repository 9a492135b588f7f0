-- Takes the lease of one session and reads its record, in one step; and takes turns with the
-- other nodes waiting for it.
--
-- KEYS[1]  the record: the bare session id (tower-sessions-redis-store's key)
-- KEYS[2]  the lease: "{<id>}:lock", in the record's hash slot
-- KEYS[3]  the turn: "{<id>}:next", "<node> <since, Unix ms>": the node waiting longest
-- ARGV[1]  the taker's token: random, never reused
-- ARGV[2]  the lease's lifetime, in milliseconds
-- ARGV[3]  the taker's node: random, one per process
-- ARGV[4]  patience, in milliseconds: how long a waiting node lets the others go first
-- ARGV[5]  the turn's lifetime, in milliseconds: it lapses when its node stops asking
--
-- Invariant: at most one token holds a session's lease, and for no longer than its lifetime
-- unless its holder renews it (renew.lua). The taker that gets the lease reads the record as
-- it is at that instant; while the lease holds, only that taker's writes (write.lua) change it.
--
-- Turns: a node's writers queue in the node and ask here one at a time, so the node that
-- holds the lease would hand it to its own next writer nearly every time. The first node
-- refused records itself as waiting; once it has waited `patience`, no other node takes the
-- lease until it has (or until it stops asking and its turn lapses). A node's writers thus
-- run in batches of `patience` at most while another node waits.
--
-- Returns {1, record or false} when taken, {0, milliseconds to wait before asking again} when
-- not.
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local waiting, since = nil, nil
local turn = redis.call('GET', KEYS[3])
if turn then
  local space = string.find(turn, ' ', 1, true)
  waiting, since = string.sub(turn, 1, space - 1), tonumber(string.sub(turn, space + 1))
end
local due = waiting and now_ms - since >= tonumber(ARGV[4])

if not (due and waiting ~= ARGV[3]) and redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if waiting == ARGV[3] then
    redis.call('DEL', KEYS[3])
  end
  return {1, redis.call('GET', KEYS[1])}
end

if not waiting then
  redis.call('SET', KEYS[3], ARGV[3] .. ' ' .. now_ms, 'PX', ARGV[5])
  waiting, since = ARGV[3], now_ms
elseif waiting == ARGV[3] then
  redis.call('PEXPIRE', KEYS[3], ARGV[5])
end
local left = redis.call('PTTL', KEYS[2])
if left < 0 then
  -- Free, but another node's turn: it asks again within a millisecond.
  left = 1
end
if waiting == ARGV[3] then
  -- Ours: ask again when it is due at the latest (then every millisecond until the holder's
  -- transaction ends).
  left = math.min(left, math.max(1, tonumber(ARGV[4]) - (now_ms - since)))
end
return {0, left}

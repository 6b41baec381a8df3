"""The Lua scripts every decision is made by, each run atomically inside Redis.

All of them read the time from Redis (`TIME`), so replicas whose clocks differ still agree.
They are registered with redis-py's `register_script`: called by SHA (EVALSHA), loaded again
by redis-py when the server does not know it (a restart, a failover, `SCRIPT FLUSH`).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as redis
from redis.commands.core import AsyncScript

# Token buckets, decided together: the cost is taken from every bucket, or from none.
#
# KEYS[i]   bucket i: a hash {l = its level, t = when it had that level, in server seconds};
#           a bucket with no key is full (keys expire once their bucket has filled up again).
# ARGV[1]   '1': take the costs whatever the levels (usage already spent), else '0'.
# ARGV[...] four per bucket: rate (units per second, > 0), capacity, cost, and the level the
#           bucket must hold for the take to go ahead.
# Returns   {1, '0', 0} when taken; {0, seconds (a string), i} when not, `seconds` being how
#           long until bucket i, the one that keeps the caller waiting longest, holds enough.
TAKE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local force = ARGV[1] == '1'
local levels = {}
local wait, blocker = 0, 0
for i, key in ipairs(KEYS) do
  local at = 4 * (i - 1) + 1
  local rate, capacity = tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2])
  local need = tonumber(ARGV[at + 4])
  local state = redis.call('HMGET', key, 'l', 't')
  local level = capacity
  if state[1] then
    local elapsed = math.max(0, now - tonumber(state[2]))
    level = math.min(capacity, tonumber(state[1]) + elapsed * rate)
  end
  levels[i] = level
  if level < need and (need - level) / rate > wait then
    wait, blocker = (need - level) / rate, i
  end
end
if blocker > 0 and not force then
  return {0, string.format('%.6f', wait), blocker}
end
for i, key in ipairs(KEYS) do
  local at = 4 * (i - 1) + 1
  local rate, capacity = tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2])
  local cost = tonumber(ARGV[at + 3])
  if cost ~= 0 then
    local level = levels[i] - cost
    redis.call('HSET', key, 'l', string.format('%.17g', level), 't', string.format('%.6f', now))
    redis.call('PEXPIRE', key, math.ceil((capacity - level) / rate * 1000) + 1000)
  end
end
return {1, '0', 0}
"""

# Concurrency slots: one holder takes a slot in every set, or in none.
#
# KEYS[i]    set i: a sorted set of holders, each scored by when its lease ends (server ms).
# ARGV[1]    the holder (an execution id); ARGV[2] the lease, in ms;
# ARGV[2+i]  the most holders set i may have.
# Holders whose lease has ended are dropped first: a crashed server's runs give their slots
# back once their leases end. A holder already in every set keeps its slots (lease renewed).
# Returns    {1, 0, 0} when held; {0, ms until the first lease in set i ends, i} when set i is
#            full.
ACQUIRE_SLOT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local holder, lease = ARGV[1], tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if not redis.call('ZSCORE', key, holder) then
    if redis.call('ZCARD', key) >= tonumber(ARGV[2 + i]) then
      local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
      return {0, math.max(1, tonumber(first[2]) - now), i}
    end
  end
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + lease, holder)
  if redis.call('PTTL', key) < lease then
    redis.call('PEXPIRE', key, lease)
  end
end
return {1, 0, 0}
"""

# A held slot's lease, moved on: ARGV[1] the holder, ARGV[2] the lease (ms). A holder that is
# no longer in a set (released, or its lease ended) is not put back. Returns how many sets still
# hold it.
RENEW_SLOT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local holder, lease = ARGV[1], tonumber(ARGV[2])
local held = 0
for _, key in ipairs(KEYS) do
  if redis.call('ZSCORE', key, holder) then
    redis.call('ZADD', key, now + lease, holder)
    held = held + 1
    if redis.call('PTTL', key) < lease then
      redis.call('PEXPIRE', key, lease)
    end
  end
end
return held
"""

# Tokens spent today: ARGV[1] more tokens, ARGV[2] seconds the day's key is kept. Returns the
# day's total.
ADD_TOKENS = """
local total = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return total
"""


@dataclass(frozen=True, slots=True)
class Scripts:
    client: redis.Redis
    take: AsyncScript
    acquire_slot: AsyncScript
    renew_slot: AsyncScript
    add_tokens: AsyncScript

    @classmethod
    def register(cls, client: redis.Redis) -> Scripts:
        """The scripts on `client` (no I/O: each is loaded on first use)."""
        return cls(
            client=client,
            take=client.register_script(TAKE),
            acquire_slot=client.register_script(ACQUIRE_SLOT),
            renew_slot=client.register_script(RENEW_SLOT),
            add_tokens=client.register_script(ADD_TOKENS),
        )

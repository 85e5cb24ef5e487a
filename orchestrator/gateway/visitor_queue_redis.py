"""The visitor queue in Redis, shared by every gateway replica (gateway/visitor_queue.py has
the rules). Each visit is one Lua script: one round trip, atomic, so two replicas can never
admit past a Space's concurrency or hand out one place twice.

Per Space, under one hash tag (a Redis Cluster keeps them on one shard):
    admitted  ZSET id -> last request (unix seconds)
    waiting   ZSET id -> arrival number (from `seq`): the line's order
    seen      ZSET id -> last ask of a waiting visitor
    seq       the arrival counter
Every key gets a TTL of a few idle times at each visit, so a Space nobody visits leaves
nothing behind.
"""

from __future__ import annotations

import math

import redis.asyncio as aioredis

from orchestrator.gateway.visitor_queue import Limits, Place

PREFIX = "spaceport:visitor-queue"

# KEYS: admitted, waiting, seen, seq. ARGV: visitor, now, concurrency, depth, idle, open, ttl.
# Returns {state, position, waiting}: state 1 admitted, 0 waiting, 2 full.
VISIT = """
local admitted, waiting, seen, seq = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local visitor, now = ARGV[1], tonumber(ARGV[2])
local concurrency, depth = tonumber(ARGV[3]), tonumber(ARGV[4])
local cutoff, open, ttl = now - tonumber(ARGV[5]), ARGV[6] == '1', tonumber(ARGV[7])
local function keep()
  for _, key in ipairs(KEYS) do redis.call('EXPIRE', key, ttl) end
end
local last = redis.call('ZSCORE', admitted, visitor)
if last and tonumber(last) >= cutoff then
  redis.call('ZADD', admitted, now, visitor)
  keep()
  return {1, 0, redis.call('ZCARD', waiting)}
end
redis.call('ZREMRANGEBYSCORE', admitted, '-inf', '(' .. cutoff)
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', seen, '-inf', '(' .. cutoff)) do
  redis.call('ZREM', waiting, gone)
  redis.call('ZREM', seen, gone)
end
local free = concurrency - redis.call('ZCARD', admitted)
local rank = redis.call('ZRANK', waiting, visitor)
if rank then
  redis.call('ZADD', seen, now, visitor)
else
  rank = redis.call('ZCARD', waiting)
  if not (open and rank < free) and rank >= depth then
    return {2, 0, rank}
  end
  redis.call('ZADD', waiting, redis.call('INCR', seq), visitor)
  redis.call('ZADD', seen, now, visitor)
end
if open and rank < free then
  redis.call('ZREM', waiting, visitor)
  redis.call('ZREM', seen, visitor)
  redis.call('ZADD', admitted, now, visitor)
  keep()
  return {1, 0, redis.call('ZCARD', waiting)}
end
keep()
return {0, rank + 1, redis.call('ZCARD', waiting)}
"""

# KEYS: admitted. ARGV: visitor, now. Only a visitor still admitted is refreshed.
SEEN = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], 'XX', ARGV[2], ARGV[1])
end
return 0
"""


def _keys(space: str) -> list[str]:
    return [f"{PREFIX}:{{{space}}}:{part}" for part in ("admitted", "waiting", "seen", "seq")]


class RedisQueueStore:
    def __init__(self, url: str) -> None:
        # A bounded pool that waits for a free connection rather than failing: each visit
        # is one short script, never a blocking command.
        pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=64, timeout=5)
        self._redis = aioredis.Redis(connection_pool=pool)
        self._visit = self._redis.register_script(VISIT)
        self._seen = self._redis.register_script(SEEN)

    async def visit(
        self, space: str, visitor: str, *, now: float, limits: Limits, open: bool
    ) -> Place:
        ttl = max(60, math.ceil(limits.idle_seconds * 4))
        args = [visitor, now, limits.concurrency, limits.depth, limits.idle_seconds]
        state, position, waiting = await self._visit(
            keys=_keys(space), args=[*args, "1" if open else "0", ttl]
        )
        return Place(
            admitted=state == 1, position=int(position), full=state == 2, waiting=int(waiting)
        )

    async def seen(self, space: str, visitor: str, *, now: float) -> None:
        await self._seen(keys=_keys(space)[:1], args=[visitor, now])

    async def aclose(self) -> None:
        await self._redis.aclose()

"""The visitor queue in Redis, shared by every gateway replica (gateway/visitor_queue.py has
the rules). Each visit is one Lua script: one round trip, atomic, so two replicas can never
admit past a Space's concurrency or hand out one place twice.

Per Space, under one hash tag (a Redis Cluster keeps them on one shard):
    admitted  ZSET id -> last request (unix seconds)
    waiting   ZSET id -> arrival number (from `seq`): the line's order
    seen      ZSET id -> last ask of a waiting visitor
    seq       the arrival counter
A visit that moves a line (drops someone idle, lets someone in from it) PUBLISHes the
Space on CHANNEL from the script; each gateway process subscribes once (`listen`) and
wakes its own long-polls of that Space (gateway/visitor_admission.py).
Every key gets a TTL of a few idle times at each visit, so a Space nobody visits leaves
nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
from collections.abc import Callable

import redis.asyncio as aioredis

from orchestrator.gateway.visitor_queue import Limits, Place

log = logging.getLogger(__name__)
PREFIX = "spaceport:visitor-queue"
# Where visits that moved a line say so (the message: the gateway's id and the Space's
# admitted key), for the long-polls waiting at the other gateways.
CHANNEL = f"{PREFIX}:moved"
RESUBSCRIBE_SECONDS = 1.0

# KEYS: admitted, waiting, seen, seq. ARGV: visitor, now, concurrency, depth, idle, open, ttl,
# the channel and this gateway's id. Returns {state, position, waiting, frees_at, moved}:
# state 1 admitted, 0 waiting, 2 full; frees_at (a string: Lua numbers come back as
# integers) the earliest expiry in the line, '' if none; moved 1 when this visit dropped
# someone or let someone in from the line, which it then PUBLISHes for the other gateways'
# long-polls.
VISIT = """
local admitted, waiting, seen, seq = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local visitor, now = ARGV[1], tonumber(ARGV[2])
local concurrency, depth = tonumber(ARGV[3]), tonumber(ARGV[4])
local idle = tonumber(ARGV[5])
local cutoff, open, ttl = now - idle, ARGV[6] == '1', tonumber(ARGV[7])
local function keep()
  for _, key in ipairs(KEYS) do redis.call('EXPIRE', key, ttl) end
end
local function tell(moved)
  if moved == 1 then redis.call('PUBLISH', ARGV[8], ARGV[9] .. ' ' .. admitted) end
  return moved
end
local last = redis.call('ZSCORE', admitted, visitor)
if last and tonumber(last) >= cutoff then
  redis.call('ZADD', admitted, now, visitor)
  keep()
  return {1, 0, redis.call('ZCARD', waiting), '', 0}
end
local moved = 0
if redis.call('ZREMRANGEBYSCORE', admitted, '-inf', '(' .. cutoff) > 0 then moved = 1 end
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', seen, '-inf', '(' .. cutoff)) do
  redis.call('ZREM', waiting, gone)
  redis.call('ZREM', seen, gone)
  moved = 1
end
local free = concurrency - redis.call('ZCARD', admitted)
local rank = redis.call('ZRANK', waiting, visitor)
if rank then
  redis.call('ZADD', seen, now, visitor)
else
  rank = redis.call('ZCARD', waiting)
  if not (open and rank < free) and rank >= depth then
    return {2, 0, rank, '', tell(moved)}
  end
  redis.call('ZADD', waiting, redis.call('INCR', seq), visitor)
  redis.call('ZADD', seen, now, visitor)
end
if open and rank < free then
  redis.call('ZREM', waiting, visitor)
  redis.call('ZREM', seen, visitor)
  redis.call('ZADD', admitted, now, visitor)
  keep()
  local left = redis.call('ZCARD', waiting)
  if left > 0 then moved = 1 end
  return {1, 0, left, '', tell(moved)}
end
keep()
local oldest = now
local first = redis.call('ZRANGE', admitted, 0, 0, 'WITHSCORES')
if first[2] then oldest = math.min(oldest, tonumber(first[2])) end
local count = redis.call('ZCARD', waiting)
first = redis.call('ZRANGE', seen, 0, 0, 'WITHSCORES')
if first[2] then oldest = math.min(oldest, tonumber(first[2])) end
local frees = ''
if redis.call('ZCARD', admitted) > 0 or count > 1 then
  frees = string.format('%.6f', oldest + idle)
end
return {0, rank + 1, count, frees, tell(moved)}
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
        self._id = secrets.token_hex(8)  # this store's (gateway's) name in its PUBLISHes
        self._on_moved: Callable[[str], None] | None = None
        self._listener: asyncio.Task[None] | None = None

    async def visit(
        self, space: str, visitor: str, *, now: float, limits: Limits, open: bool
    ) -> Place:
        ttl = max(60, math.ceil(limits.idle_seconds * 4))
        args = [visitor, now, limits.concurrency, limits.depth, limits.idle_seconds]
        state, position, waiting, frees_at, moved = await self._visit(
            keys=_keys(space), args=[*args, "1" if open else "0", ttl, CHANNEL, self._id]
        )
        return Place(
            admitted=state == 1,
            position=int(position),
            full=state == 2,
            waiting=int(waiting),
            frees_at=float(frees_at) if frees_at else None,
            moved=moved == 1,
        )

    def listen(self, on_moved: Callable[[str], None]) -> None:
        """Call `on_moved(space)` for each line another gateway's visit moved: one
        subscription per store (per gateway process), however many visitors wait. Started
        on the running loop at the first call; later calls only replace the callback."""
        self._on_moved = on_moved
        if self._listener is None or self._listener.done():
            self._listener = asyncio.get_running_loop().create_task(
                self._listen(), name="visitor-queue-moves"
            )

    async def _listen(self) -> None:
        own = f"{self._id} "
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHANNEL)
                async for message in pubsub.listen():
                    data = message.get("data")
                    text = data.decode() if isinstance(data, bytes) else str(data)
                    if text.startswith(own) or self._on_moved is None:
                        continue  # this gateway's own visit: it woke its waiters itself
                    key = text.partition(" ")[2]
                    self._on_moved(key.removeprefix(f"{PREFIX}:{{").removesuffix("}:admitted"))
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - Redis restarting: long-polls still time out
                log.warning("visitor queue: the moves subscription failed", exc_info=True)
                await asyncio.sleep(RESUBSCRIBE_SECONDS)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def seen(self, space: str, visitor: str, *, now: float) -> None:
        await self._seen(keys=_keys(space)[:1], args=[visitor, now])

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
        await self._redis.aclose()

"""Shared limits in Redis (``[limits] redis_url``): the same token bucket and stream slots
as the database keeps, each step one atomic script."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

# KEYS[1] bucket; ARGV rate, now_us. Returns -1 when a token was taken, else microseconds
# to wait.
_TAKE = """
local rate = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or rate
local at = tonumber(state[2]) or now
tokens = math.min(rate, tokens + math.max(0, now - at) / 1e6 * rate / 60)
local wait = -1
if tokens >= 1 then tokens = tokens - 1 else wait = math.ceil((1 - tokens) * 60 / rate * 1e6) end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], 120000)
return wait
"""

# KEYS[1] the key's slots (a sorted set by expiry); ARGV slot, limit, now_us, expires_us.
_OPEN = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
redis.call('PEXPIRE', KEYS[1], 3600000)
return 1
"""


class RedisLimitCounts:
    def __init__(self, url: str, prefix: str = "continuo:") -> None:
        self.client: Any = aioredis.from_url(url)
        self.prefix = prefix
        self._take = self.client.register_script(_TAKE)
        self._open = self.client.register_script(_OPEN)

    async def take_token(self, key: str, rate_per_minute: int, now_us: int) -> float | None:
        wait = int(await self._take(keys=[f"{self.prefix}rate:{key}"], args=[rate_per_minute, now_us]))
        return None if wait < 0 else wait / 1e6

    async def open_slot(self, key: str, slot: str, limit: int, now_us: int, expires_us: int) -> bool:
        opened = await self._open(keys=[f"{self.prefix}streams:{key}"], args=[slot, limit, now_us, expires_us])
        return bool(int(opened))

    async def close_slot(self, key: str, slot: str) -> None:
        await self.client.zrem(f"{self.prefix}streams:{key}", slot)

    async def renew_slots(self, key_slots: list[tuple[str, str]], expires_us: int) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            for key, slot in key_slots:
                pipe.zadd(f"{self.prefix}streams:{key}", {slot: expires_us}, xx=True)
            await pipe.execute()

    async def aclose(self) -> None:
        await self.client.aclose()

"""Per-key limits, counted in one place every worker and replica shares: requests per
minute (a token bucket) and streams open at once.

The counts live in the database by default, or in Redis when ``[limits] redis_url`` is
set; N workers or replicas therefore allow the limit once, not N times. Keys are never
stored: a limit is counted under a hash of the key. A stream slot carries a lease that its
process renews while the stream is open, so the slots of a process that died free
themselves.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from typing import Protocol

from continuo.config import LimitsConfig
from continuo.ids import new_id

log = logging.getLogger("continuo")

# A stream slot's lease, and how often an open stream's process renews it.
SLOT_LEASE_SECONDS = 60.0
SLOT_RENEW_SECONDS = 15.0


class LimitCounts(Protocol):
    """Where the counts live (the store, or Redis)."""

    async def take_token(self, key: str, rate_per_minute: int, now_us: int) -> float | None:
        """Take one request from the key's bucket; None if allowed, else seconds to wait."""

    async def open_slot(self, key: str, slot: str, limit: int, now_us: int, expires_us: int) -> bool: ...

    async def close_slot(self, key: str, slot: str) -> None: ...

    async def renew_slots(self, key_slots: list[tuple[str, str]], expires_us: int) -> None: ...


def refill(tokens: float, elapsed_s: float, rate_per_minute: int) -> float:
    """A bucket of ``rate_per_minute`` tokens that refills continuously."""
    return min(float(rate_per_minute), tokens + elapsed_s * rate_per_minute / 60)


def take_from(tokens: float, rate_per_minute: int) -> tuple[float, float | None]:
    """(tokens left, None) when a token was taken; (tokens, seconds to wait) when not."""
    if tokens < 1:
        return tokens, (1 - tokens) * 60 / rate_per_minute
    return tokens - 1, None


def limit_key(caller: str) -> str:
    return "sha256:" + hashlib.sha256(caller.encode()).hexdigest()


class Limiter:
    def __init__(self, config: LimitsConfig, counts: LimitCounts) -> None:
        self.config = config
        self.counts = counts
        self.slots: dict[str, str] = {}  # open slot -> its key
        self._renewer: asyncio.Task[None] | None = None

    async def take(self, caller: str) -> float | None:
        """Count a request; None if allowed, else the seconds to wait before retrying."""
        rate = self.config.requests_per_minute
        if rate <= 0:
            return None
        return await self.counts.take_token(limit_key(caller), rate, _now_us())

    async def open_stream(self, caller: str) -> str | None:
        """A slot for one more open stream (its id), or None when the key has none left.
        With no limit, every stream gets the empty slot."""
        limit = self.config.concurrent_streams
        if limit <= 0:
            return ""
        key, slot, now = limit_key(caller), new_id("slot"), _now_us()
        if not await self.counts.open_slot(key, slot, limit, now, now + int(SLOT_LEASE_SECONDS * 1e6)):
            return None
        self.slots[slot] = key
        self._start_renewing()
        return slot

    async def close_stream(self, slot: str) -> None:
        key = self.slots.pop(slot, None)
        if key is not None:
            await self.counts.close_slot(key, slot)

    def _start_renewing(self) -> None:
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.get_running_loop().create_task(self._renew())

    async def _renew(self) -> None:
        while self.slots:
            await asyncio.sleep(SLOT_RENEW_SECONDS)
            try:
                expires = _now_us() + int(SLOT_LEASE_SECONDS * 1e6)
                await self.counts.renew_slots([(key, slot) for slot, key in self.slots.items()], expires)
            except Exception:
                log.warning("could not renew stream slots", exc_info=True)

    async def aclose(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


def _now_us() -> int:
    return time.time_ns() // 1000

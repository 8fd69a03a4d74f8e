"""Per-key limits on one replica: requests per minute (a token bucket) and streams open."""

from __future__ import annotations

import math
import time

from continuo.config import LimitsConfig


class Limiter:
    def __init__(self, config: LimitsConfig) -> None:
        self.config = config
        self._buckets: dict[str, tuple[float, float]] = {}
        self._streams: dict[str, int] = {}

    def take(self, key: str) -> float | None:
        """Count a request; None if allowed, else the seconds to wait before retrying."""
        rate = self.config.requests_per_minute
        if rate <= 0:
            return None
        now = time.monotonic()
        tokens, last = self._buckets.get(key, (float(rate), now))
        tokens = min(float(rate), tokens + (now - last) * rate / 60)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return (1 - tokens) * 60 / rate
        self._buckets[key] = (tokens - 1, now)
        return None

    def open_stream(self, key: str) -> bool:
        limit = self.config.concurrent_streams
        if limit > 0 and self._streams.get(key, 0) >= limit:
            return False
        self._streams[key] = self._streams.get(key, 0) + 1
        return True

    def close_stream(self, key: str) -> None:
        left = self._streams.get(key, 1) - 1
        if left > 0:
            self._streams[key] = left
        else:
            self._streams.pop(key, None)


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))

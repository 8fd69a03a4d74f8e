"""The load generator: aiohttp on uvloop, keep-alive connections, a fixed number of
requests spread over ``concurrency`` workers. Every loop here is bounded by a request
count and a timeout."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

JSON = {"content-type": "application/json"}


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass
class Batch:
    n: int
    concurrency: int
    elapsed: float = 0.0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds, whole request
    first_event: list[float] = field(default_factory=list)  # streams: time to the first event
    error_samples: list[str] = field(default_factory=list)

    def error(self, text: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(text[:300])

    def stats(self) -> dict[str, Any]:
        ok = len(self.latencies)
        out: dict[str, Any] = {
            "n": self.n,
            "ok": ok,
            "errors": self.errors,
            "concurrency": self.concurrency,
            "elapsed_s": round(self.elapsed, 3),
            "per_s": round(ok / self.elapsed, 1) if self.elapsed else None,
            "p50_ms": round(percentile(self.latencies, 50) * 1000, 3),
            "p75_ms": round(percentile(self.latencies, 75) * 1000, 3),
            "p90_ms": round(percentile(self.latencies, 90) * 1000, 3),
            "p95_ms": round(percentile(self.latencies, 95) * 1000, 3),
            "p99_ms": round(percentile(self.latencies, 99) * 1000, 3),
            "p999_ms": round(percentile(self.latencies, 99.9) * 1000, 3),
            "max_ms": round(max(self.latencies) * 1000, 3) if ok else None,
            "mean_ms": round(sum(self.latencies) / ok * 1000, 3) if ok else None,
        }
        if self.first_event:
            out["first_p50_ms"] = round(percentile(self.first_event, 50) * 1000, 3)
            out["first_p99_ms"] = round(percentile(self.first_event, 99) * 1000, 3)
            # For streams the whole-request latency is the time to the last event.
            out["last_p50_ms"] = out["p50_ms"]
            out["last_p99_ms"] = out["p99_ms"]
        if self.error_samples:
            out["error_samples"] = self.error_samples
        return out


def session(limit: int, timeout: float = 120.0) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=0, keepalive_timeout=120, force_close=False)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout, sock_read=timeout),
        skip_auto_headers=("User-Agent",),
    )


async def requests(
    client: aiohttp.ClientSession,
    url: str,
    body: bytes | Callable[[int], bytes],
    n: int,
    concurrency: int,
    check: Callable[[bytes], bool] | None = None,
) -> Batch:
    """``n`` POSTs of a JSON ``body`` (or ``body(i)``), ``concurrency`` at a time; each
    latency is from sending to the last byte of the answer."""
    batch = Batch(n, concurrency)
    counter = itertools.count()
    latencies = batch.latencies
    clock = time.perf_counter

    async def worker() -> None:
        while (i := next(counter)) < n:
            data = body(i) if callable(body) else body
            start = clock()
            try:
                async with client.post(url, data=data, headers=JSON) as response:
                    payload = await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                batch.error(f"{type(exc).__name__}: {exc}")
                continue
            elapsed = clock() - start
            if status != 200 or (check is not None and not check(payload)):
                batch.error(f"{status}: {payload[:300]!r}")
                continue
            latencies.append(elapsed)

    start = clock()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, n))))
    batch.elapsed = clock() - start
    return batch


async def streams(
    client: aiohttp.ClientSession,
    url: str,
    body: bytes,
    n: int,
    concurrency: int,
    terminal: bytes,
) -> Batch:
    """``n`` streamed POSTs; per stream the time to its first whole SSE event (the first
    blank line) and to its last event (the last bytes before the body ends). A stream
    that does not end with ``terminal`` counts as an error."""
    batch = Batch(n, concurrency)
    counter = itertools.count()
    clock = time.perf_counter

    async def worker() -> None:
        while next(counter) < n:
            start = clock()
            first = last = 0.0
            head = b""
            tail = b""
            try:
                async with client.post(url, data=body, headers=JSON) as response:
                    status = response.status
                    async for chunk in response.content.iter_any():
                        now = clock()
                        if not first:
                            head += chunk
                            if b"\n\n" in head:
                                first = now
                        last = now
                        tail = (tail + chunk)[-256:]
            except (aiohttp.ClientError, TimeoutError) as exc:
                batch.error(f"{type(exc).__name__}: {exc}")
                continue
            if status != 200 or not first or terminal not in tail:
                batch.error(f"{status}: ...{tail[-200:]!r}")
                continue
            batch.first_event.append(first - start)
            batch.latencies.append(last - start)

    start = clock()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, n))))
    batch.elapsed = clock() - start
    return batch


@dataclass
class Held:
    opened: int = 0
    first: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    open_s: float = 0.0
    stalled: bool = False
    last_first_at: float = 0.0


async def hold_streams(
    client: aiohttp.ClientSession,
    url: str,
    body: bytes,
    n: int,
    on_all_first: Callable[[Held], Any],
    wait_timeout: float,
    stall_timeout: float = 10.0,
) -> Held:
    """Open ``n`` streams at once; when every one has had its first event (or after
    ``wait_timeout`` seconds, or once no new stream got its first event for
    ``stall_timeout`` seconds), call ``on_all_first`` (it may be async), then close all."""
    held = Held()
    all_first = asyncio.Event()
    release = asyncio.Event()

    async def one() -> None:
        try:
            async with client.post(url, data=body, headers=JSON) as response:
                held.opened += 1
                if response.status != 200:
                    raise RuntimeError(f"status {response.status}: {(await response.read())[:200]!r}")
                buf = b""
                async for chunk in response.content.iter_any():
                    buf += chunk
                    if b"\n\n" in buf:
                        break
                else:
                    raise RuntimeError("stream ended before its first event")
                held.first += 1
                held.last_first_at = time.perf_counter()
                if held.first == n:
                    all_first.set()
                await release.wait()
                response.close()  # drop the connection: the server sees the client go away
        except Exception as exc:
            held.errors += 1
            if len(held.error_samples) < 5:
                held.error_samples.append(f"{type(exc).__name__}: {exc}"[:300])
            if held.first + held.errors >= n:
                all_first.set()

    start = time.perf_counter()
    tasks = [asyncio.create_task(one()) for _ in range(n)]
    try:
        deadline = time.monotonic() + wait_timeout
        seen, progress_at = -1, time.monotonic()
        while not all_first.is_set() and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_first.wait(), 0.5)
            if held.first != seen:
                seen, progress_at = held.first, time.monotonic()
            elif time.monotonic() - progress_at > stall_timeout:
                held.stalled = True
                break
        held.open_s = (held.last_first_at or time.perf_counter()) - start
        result = on_all_first(held)
        if asyncio.iscoroutine(result):
            await result
    finally:
        release.set()
        _, pending = await asyncio.wait(tasks, timeout=30)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=10)
    return held

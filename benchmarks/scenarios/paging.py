"""Short requests while another client pages a deep chain: one chain of
``plan.paging_depth`` turns (the chains scenario's chain, extended, or a new one); then
short `store: true` requests at c=1 alone, and again while a second client pages
``GET /v1/responses/{id}/input_items?limit=100`` through the whole chain, following the
cursor (``after``), over and over. If reading a page stalled Continuo's event loop, the
short requests' tail would show it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from benchmarks import loadgen
from benchmarks.harness import Bench
from benchmarks.plan import log
from benchmarks.scenarios.chains import add_turn


@dataclass
class Pager:
    """What the paging client did: per page, when it ended and its latency (seconds); when
    each whole pass through the chain ended; the items a pass saw."""

    pages: list[tuple[float, float]] = field(default_factory=list)
    passes: list[float] = field(default_factory=list)
    items_per_pass: int | None = None
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    first_pass: asyncio.Event = field(default_factory=asyncio.Event)

    def error(self, text: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(text[:300])

    def stats(self, start: float, end: float) -> dict[str, Any]:
        """The pages and passes that ended between ``start`` and ``end``."""
        ms = [latency * 1000 for ended, latency in self.pages if start <= ended <= end]
        return {
            "pages": len(ms),
            "passes": sum(start <= ended <= end for ended in self.passes),
            "items_per_pass": self.items_per_pass,
            "errors": self.errors,
            "pages_per_s": round(len(ms) / (end - start), 1) if end > start else None,
            "p50_ms": round(loadgen.percentile(ms, 50), 3),
            "p99_ms": round(loadgen.percentile(ms, 99), 3),
            "max_ms": round(max(ms), 3) if ms else None,
            **({"error_samples": self.error_samples} if self.error_samples else {}),
        }


async def page_forever(client: aiohttp.ClientSession, url: str, limit: int, pager: Pager, stop: asyncio.Event) -> None:
    """Page ``url`` (an input_items list) from its start to its end following ``after``,
    then start again, until ``stop`` is set. Bounded: each request has the session's
    timeout, and a failing page ends the loop after a few errors."""
    clock = time.perf_counter
    while not stop.is_set():
        after: str | None = None
        seen = 0
        while not stop.is_set():
            params = {"limit": str(limit)} | ({"after": after} if after else {})
            started = clock()
            try:
                async with client.get(url, params=params) as response:
                    payload = await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                pager.error(f"{type(exc).__name__}: {exc}")
                status, payload = 0, b""
            if status != 200:
                if status:
                    pager.error(f"{status}: {payload[:300]!r}")
                if pager.errors >= 5:
                    pager.first_pass.set()
                    return
                break
            ended = clock()
            pager.pages.append((ended, ended - started))
            page = orjson.loads(payload)
            seen += len(page["data"])
            if not page.get("has_more"):
                pager.passes.append(ended)
                pager.items_per_pass = seen
                pager.first_pass.set()
                break
            after = page["last_id"]


async def run(bench: Bench, client: Any) -> None:
    plan = bench.plan
    depth = plan.paging_depth
    start_turn, tip = bench.chain_tip if bench.chain_tip and bench.chain_tip[0] <= depth else (0, None)
    what = f"extending the chain from {start_turn}" if start_turn else "building a chain"
    log(f"paging: {what} to {depth} turns")
    started = time.perf_counter()
    last_turn = 0.0
    for turn in range(start_turn + 1, depth + 1):
        turn_started = time.perf_counter()
        tip = await add_turn(bench, client, turn, tip)
        last_turn = time.perf_counter() - turn_started
        if turn % 1000 == 0 and turn < depth:
            log(f"paging: {turn} turns ({time.perf_counter() - started:.1f} s, the last in {last_turn * 1000:.1f} ms)")
    assert tip is not None
    bench.chain_tip = (depth, tip)
    build_s = time.perf_counter() - started
    log(f"paging: {depth - start_turn} turns added in {build_s:.1f} s (the last in {last_turn * 1000:.1f} ms)")

    url = f"{bench.continuo_url}/v1/responses"
    body = bench.responses_body(store=True)
    items_url = f"{bench.continuo_url}/v1/responses/{tip}/input_items"
    n = plan.paging_n
    warm = min(plan.warmup, n)
    await loadgen.requests(client, url, body, warm, 1)
    alone = await bench.measured("continuo", loadgen.requests(client, url, body, n, 1))

    # The pager is another client: a session (and connection) of its own.
    pager = Pager()
    stop = asyncio.Event()
    async with loadgen.session(limit=1) as pager_client:
        task = asyncio.create_task(page_forever(pager_client, items_url, plan.paging_limit, pager, stop))
        try:
            # One whole pass first (it warms the pager and counts the chain's items).
            await asyncio.wait_for(pager.first_pass.wait(), 600)
            await loadgen.requests(client, url, body, warm, 1)
            window_start = time.perf_counter()
            paging = await bench.measured("continuo", loadgen.requests(client, url, body, n, 1))
            window_end = time.perf_counter()
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(task, 30)
    pager_stats = pager.stats(window_start, window_end)
    if pager.errors:
        log(f"  pager: {pager.errors} errors, e.g. {pager.error_samples[:2]}")

    def ratio(key: str) -> float | None:
        a, b = alone.get(key), paging.get(key)
        return round(b / a, 3) if a and b is not None else None

    bench.results["paging"] = {
        "depth": depth,
        "turns_added": depth - start_turn,
        "build_s": round(build_s, 2),
        "build_last_turn_ms": round(last_turn * 1000, 3),
        "page_limit": plan.paging_limit,
        "short_alone": alone,
        "short_while_paging": paging,
        "p50_ratio": ratio("p50_ms"),
        "p99_ratio": ratio("p99_ms"),
        "pager": pager_stats,
    }
    log(
        f"paging: short requests p50/p99 alone {alone['p50_ms']:.2f}/{alone['p99_ms']:.2f} ms, while paging "
        f"{paging['p50_ms']:.2f}/{paging['p99_ms']:.2f} ms; pager {pager_stats['pages']} pages "
        f"({pager_stats['passes']} passes of {pager_stats['items_per_pass']} items), page p50/p99 "
        f"{pager_stats['p50_ms']:.2f}/{pager_stats['p99_ms']:.2f} ms"
    )

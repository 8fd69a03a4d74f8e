"""Memory: Continuo's RSS when idle, with many slow streams open at once, and after they
closed."""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

from benchmarks import loadgen
from benchmarks.harness import Bench
from benchmarks.plan import SLOW_MODEL, log
from benchmarks.procs import cpu_seconds, established_to, memory_kib, threads


async def run(bench: Bench) -> None:
    plan = bench.plan
    n = plan.memory_streams
    pid = bench.continuo_pid
    gc.collect()
    await asyncio.sleep(1.0)
    idle = memory_kib(pid)
    idle_threads = threads(pid)
    url = f"{bench.continuo_url}/v1/responses"
    body = bench.responses_body(store=True, stream=True, model=SLOW_MODEL, text="Hold this stream open.")
    sample: dict[str, Any] = {}

    async def read(held: loadgen.Held) -> None:
        sample.update(memory_kib(pid))
        sample["threads"] = threads(pid)
        sample["client_connections"] = established_to(bench.continuo_port)
        sample["upstream_connections"] = established_to(bench.upstream_port)
        sample["stalled"] = held.stalled
        sample["first"] = held.first
        sample["open_s"] = round(held.open_s, 2)

    log(f"memory: opening {n} slow streams at once")
    async with loadgen.session(limit=0, timeout=plan.slow_interval * plan.slow_tokens + 60) as client:
        held = await loadgen.hold_streams(client, url, body, n, read, wait_timeout=120, stall_timeout=5)
    # Let Continuo wind down what the closed streams left (bounded).
    deadline = time.monotonic() + 30
    await asyncio.sleep(2.0)
    while time.monotonic() < deadline:  # until Continuo is idle: < 5% of a core for 0.5 s
        used = cpu_seconds(pid)
        await asyncio.sleep(0.5)
        if cpu_seconds(pid) - used < 0.025:
            break
    after = memory_kib(pid)
    got = sample.get("first", 0)
    bench.results["memory"] = {
        "streams": n,
        "streams_with_first_event": got,
        "errors": held.errors,
        "error_samples": held.error_samples,
        "seconds_to_last_first_event": sample.get("open_s"),
        "stalled": sample.get("stalled"),
        "client_connections_open": sample.get("client_connections"),
        "upstream_connections_open": sample.get("upstream_connections"),
        "idle_rss_kib": idle["VmRSS"],
        "rss_with_streams_kib": sample.get("VmRSS"),
        "delta_kib": sample.get("VmRSS", 0) - idle["VmRSS"],
        "kib_per_stream": round((sample.get("VmRSS", 0) - idle["VmRSS"]) / got, 1) if got else None,
        "kib_per_request": round((sample.get("VmRSS", 0) - idle["VmRSS"]) / n, 1),
        "rss_after_close_kib": after["VmRSS"],
        "peak_rss_kib": after["VmHWM"],
        "threads_idle": idle_threads,
        "threads_with_streams": sample.get("threads"),
        "startup_rss_kib": bench.results.get("startup_rss_kib"),
    }
    log(
        f"memory: idle {idle['VmRSS'] / 1024:.1f} MiB, with {got}/{n} streams {sample.get('VmRSS', 0) / 1024:.1f} "
        f"MiB, after close {after['VmRSS'] / 1024:.1f} MiB ({held.errors} errors; "
        f"{sample.get('client_connections')} client and {sample.get('upstream_connections')} upstream connections)"
    )
    bench.check_alive()

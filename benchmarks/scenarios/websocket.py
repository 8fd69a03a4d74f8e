"""WebSocket mode (issue 14): per-turn added latency and Continuo's CPU of a 20-turn tool
loop over one socket (``store: false`` and ``store: true``) against the same turns over
HTTP (streamed, ``store: true``, chained with ``previous_response_id`` on one keep-alive
connection). The loops are ``benchmarks/ws_loop.py``; the baseline is a direct streamed
request to the upstream, measured here."""

from __future__ import annotations

import gc
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks import loadgen
from benchmarks.harness import Bench
from benchmarks.plan import MODEL, log
from benchmarks.procs import cpu_delta, cpu_snapshot
from benchmarks.ws_loop import http_loop, ws_loop

CASES = ("ws_store_false", "ws_store_true", "http_store_true")


async def run(bench: Bench, client: Any) -> None:
    plan = bench.plan
    turns, loops = plan.ws_turns, plan.ws_loops
    base = bench.continuo_url
    up = f"{bench.upstream_url}/v1/chat/completions"
    direct = bench.chat_body(stream=True)
    n_direct = max(turns * loops, 100)
    await loadgen.streams(client, up, direct, min(plan.warmup, n_direct), 1, b"[DONE]")
    baseline = await bench.measured("upstream", loadgen.streams(client, up, direct, n_direct, 1, b"[DONE]"))
    loop_of: dict[str, Callable[[], Awaitable[list[float]]]] = {
        "ws_store_false": lambda: ws_loop(base, MODEL, turns, store=False),
        "ws_store_true": lambda: ws_loop(base, MODEL, turns, store=True),
        "http_store_true": lambda: http_loop(base, MODEL, turns),
    }
    out: dict[str, Any] = {"turns": turns, "loops": loops, "baseline": baseline}
    for name in CASES:
        await loop_of[name]()  # warm-up loop, not counted
        samples: list[float] = []
        gc.collect()
        gc.disable()
        try:
            before = cpu_snapshot(bench.continuo_pid)
            for _ in range(loops):
                samples += await loop_of[name]()
            after = cpu_snapshot(bench.continuo_pid)
        finally:
            gc.enable()
        bench.check_alive()
        p50 = loadgen.percentile(samples, 50) * 1000
        p99 = loadgen.percentile(samples, 99) * 1000
        out[name] = {
            "turns_measured": len(samples),
            "p50_ms": round(p50, 3),
            "p99_ms": round(p99, 3),
            "added_p50_ms": round(p50 - baseline["last_p50_ms"], 3),
            "added_p99_ms": round(p99 - baseline["last_p50_ms"], 3),
            "server_cpu_ms_per_turn": round(cpu_delta(bench.continuo_pid, before, after) * 1000 / len(samples), 4),
        }
        log(
            f"websocket {name}: p50 {p50:.2f} ms, p99 {p99:.2f} ms per turn, "
            f"{out[name]['server_cpu_ms_per_turn']} ms CPU per turn "
            f"(direct stream p50 {baseline['last_p50_ms']:.2f} ms)"
        )
    bench.results["websocket"] = out

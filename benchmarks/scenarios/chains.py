"""Chains and storage: one chain built a turn at a time; the database's size as it grows;
requests chaining on each depth's last id against the same context sent straight to the
upstream."""

from __future__ import annotations

import math
import time
from typing import Any

import orjson

from benchmarks import loadgen
from benchmarks.harness import Bench
from benchmarks.plan import INPUT, log


async def run(bench: Bench, client: Any) -> None:
    """One chain, built a turn at a time (store: true). Database size at 0, 1, 10,
    100, 1000 turns; then, per depth, requests chaining on that depth's last id
    (each a branch: the chain itself does not grow), against the same context sent
    to the upstream directly."""
    plan = bench.plan
    depths = plan.chain_depths
    deepest = max(depths)
    url = f"{bench.continuo_url}/v1/responses"
    ids: dict[int, str] = {}
    sizes: dict[int, dict[str, int]] = {0: bench.db_size()}
    build_latency: dict[int, float] = {}
    previous: str | None = None
    log(f"chains: building one chain of {deepest} turns")
    checkpoints = sorted(set(depths) | {d for d in (1, 10, 100, 1000) if d <= deepest})
    start_build = time.perf_counter()
    for turn in range(1, deepest + 1):
        started = time.perf_counter()
        previous = await add_turn(bench, client, turn, previous)
        build_latency[turn] = time.perf_counter() - started
        if turn in checkpoints:
            ids[turn] = previous
            sizes[turn] = bench.db_size()
    build_s = time.perf_counter() - start_build
    assert previous is not None
    bench.chain_tip = (deepest, previous)
    log(f"chains: built in {build_s:.1f} s")

    base = sizes[0]["db_bytes"]
    storage: dict[str, Any] = {
        "measure": "main database file after PRAGMA wal_checkpoint(TRUNCATE) (WAL emptied), minus the size "
        "before the first turn",
        "empty_db_bytes": base,
        "turns": {},
    }
    for turns in (t for t in checkpoints if t >= 10):
        grown = sizes[turns]["db_bytes"] - base
        storage["turns"][str(turns)] = {
            "bytes": grown,
            "bytes_per_turn": round(grown / turns, 1),
            "db_plus_wal_before_checkpoint": sizes[turns]["db_plus_wal_before_checkpoint"],
            "pages": sizes[turns]["pages"],
            "free_pages": sizes[turns]["free_pages"],
        }
    bench.results["storage"] = storage
    bench.results["chain_build"] = {
        "turns": deepest,
        "seconds": round(build_s, 2),
        "turn_latency_ms": {str(d): round(build_latency[d] * 1000, 3) for d in checkpoints},
    }

    # The context a depth-d request sends upstream: every earlier input and output.
    answer = "tok " * plan.tokens
    per_depth: dict[str, Any] = {}
    for depth in depths:
        messages: list[dict[str, Any]] = []
        for turn in range(1, depth + 1):
            messages.append({"role": "user", "content": f"Turn {turn}: {INPUT}"})
            messages.append({"role": "assistant", "content": answer})
        messages.append({"role": "user", "content": INPUT})
        direct = bench.chat_body(messages)
        chained = bench.responses_body(store=True, previous=ids[depth])
        n = plan.chain_n
        warm = max(5, n // 10)
        up = f"{bench.upstream_url}/v1/chat/completions"
        await loadgen.requests(client, up, direct, warm, 1)
        baseline = await bench.measured("upstream", loadgen.requests(client, up, direct, n, 1))
        await loadgen.requests(client, url, chained, warm, 1)
        continuo = await bench.measured("continuo", loadgen.requests(client, url, chained, n, 1))
        per_depth[str(depth)] = {
            "upstream_messages": len(messages),
            "baseline": baseline,
            "continuo": continuo,
        }
        log(
            f"chains: depth {depth}: direct p50 {baseline['p50_ms']:.2f} ms, continuo p50 "
            f"{continuo['p50_ms']:.2f} ms, {continuo['server_cpu_ms_per_req']} ms CPU/req"
        )
    first = per_depth[str(depths[0])]["continuo"]["p50_ms"]
    for value in per_depth.values():
        value["ratio_to_depth_1"] = round(value["continuo"]["p50_ms"] / first, 3)
        value["added_p50_ms"] = round(value["continuo"]["p50_ms"] - value["baseline"]["p50_ms"], 3)
    bench.results["chains"] = {"depths": list(depths), "per_depth": per_depth, "scaling": chain_scaling(per_depth)}


async def add_turn(bench: Bench, client: Any, turn: int, previous: str | None) -> str:
    """One more turn on a chain (``store: true``, chained on ``previous``): its id."""
    body = bench.responses_body(store=True, previous=previous, text=f"Turn {turn}: {INPUT}")
    async with client.post(f"{bench.continuo_url}/v1/responses", data=body, headers=loadgen.JSON) as response:
        payload = await response.read()
        if response.status != 200:
            raise RuntimeError(f"chain turn {turn} failed: {response.status} {payload[:300]!r}")
    new_id: str = orjson.loads(payload)["id"]
    return new_id


def chain_scaling(per_depth: dict[str, Any]) -> dict[str, Any]:
    """How the p50 grows with depth, above depth 1: the exponent k in growth ~ depth^k
    between the two deepest depths (1 is linear), and the p50 added per turn."""
    depths = sorted(int(d) for d in per_depth)
    p50 = {d: per_depth[str(d)]["continuo"]["p50_ms"] for d in depths}
    first = depths[0]
    out: dict[str, Any] = {
        "ms_per_turn": {str(d): round((p50[d] - p50[first]) / (d - first), 4) for d in depths if d != first}
    }
    if len(depths) >= 3:
        a, b = depths[-2], depths[-1]
        grow_a, grow_b = p50[a] - p50[first], p50[b] - p50[first]
        if grow_a > 0 and grow_b > 0:
            exponent = math.log(grow_b / grow_a) / math.log((b - first) / (a - first))
            out["exponent"] = round(exponent, 3)
            out["between"] = [a, b]
            out["linear_or_better"] = exponent <= 1.15
    return out

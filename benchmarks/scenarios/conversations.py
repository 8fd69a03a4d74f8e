"""Conversations (issue 12): a create on a conversation of 1, 100 and 10,000 items, against
the same context sent by ``previous_response_id`` (a chain of N/2 turns)."""

from __future__ import annotations

from typing import Any

import orjson

from benchmarks import loadgen
from benchmarks.harness import Bench
from benchmarks.plan import INPUT, MODEL, log
from benchmarks.scenarios.chains import add_turn

BATCH = 20  # items per POST /v1/conversations and /items


def _items(start: int, count: int) -> list[dict[str, Any]]:
    """Alternating user and assistant messages, as a chain's turns hold them."""
    out = []
    for i in range(start, start + count):
        role = "user" if i % 2 == 0 else "assistant"
        text = f"Turn {i // 2}: hello." if role == "user" else "tok " * 32
        out.append({"type": "message", "role": role, "content": text})
    return out


async def _post(client: Any, url: str, body: dict[str, Any]) -> dict[str, Any]:
    async with client.post(url, data=orjson.dumps(body), headers=loadgen.JSON) as response:
        payload = await response.read()
        if response.status != 200:
            raise RuntimeError(f"POST {url}: {response.status} {payload[:300]!r}")
    result: dict[str, Any] = orjson.loads(payload)
    return result


async def conversation(bench: Bench, client: Any, size: int) -> str:
    """A conversation holding ``size`` items, made through the HTTP API."""
    base = f"{bench.continuo_url}/v1/conversations"
    first = min(BATCH, size)
    made = await _post(client, base, {"items": _items(0, first)})
    for start in range(first, size, BATCH):
        await _post(client, f"{base}/{made['id']}/items", {"items": _items(start, min(BATCH, size - start))})
    return str(made["id"])


async def chain(bench: Bench, client: Any, turns: int) -> str:
    """The last id of a chain of ``turns`` turns (2 items each); the deepest chain already
    built (chains, paging) is reused or extended when it is no deeper."""
    start, tip = (0, None)
    if bench.chain_tip and bench.chain_tip[0] <= turns:
        start, tip = bench.chain_tip
    for turn in range(start + 1, turns + 1):
        tip = await add_turn(bench, client, turn, tip)
    assert tip is not None
    if turns >= (bench.chain_tip[0] if bench.chain_tip else 0):
        bench.chain_tip = (turns, tip)
    return tip


async def run(bench: Bench, client: Any) -> None:
    plan = bench.plan
    url = f"{bench.continuo_url}/v1/responses"
    n = plan.conversation_n
    out: dict[str, Any] = {"sizes": list(plan.conversation_sizes), "n": n, "per_size": {}}
    for size in plan.conversation_sizes:
        conv = await conversation(bench, client, size)
        turns = max(1, size // 2)
        tip = await chain(bench, client, turns)
        conv_body = orjson.dumps({"model": MODEL, "input": INPUT, "store": True, "conversation": conv})
        chain_body = bench.responses_body(store=True, previous=tip)
        warm = min(plan.warmup // 10 or 1, n)
        # One create at a time per conversation (c=1): each appends 2 items to it.
        await loadgen.requests(client, url, conv_body, warm, 1)
        conv_stats = await bench.measured("continuo", loadgen.requests(client, url, conv_body, n, 1))
        await loadgen.requests(client, url, chain_body, warm, 1)
        chain_stats = await bench.measured("continuo", loadgen.requests(client, url, chain_body, n, 1))
        out["per_size"][str(size)] = {
            "items": size,
            "chain_turns": turns,
            "chain_items": turns * 2,
            "conversation": conv_stats,
            "chain": chain_stats,
            "added_p50_ms": round(conv_stats["p50_ms"] - chain_stats["p50_ms"], 3),
            "added_p99_ms": round(conv_stats["p99_ms"] - chain_stats["p99_ms"], 3),
        }
        log(
            f"conversations {size:,} items: conversation p50 {conv_stats['p50_ms']:.2f} ms, "
            f"chain of {turns} turns p50 {chain_stats['p50_ms']:.2f} ms"
        )
    bench.results["conversations"] = out

"""The console's reads on a large store, and what its search index costs a stored create.

``python -m benchmarks.console [--rows 100000] [--database sqlite|postgresql|both]``

1. Stored create: CPU per ``save_response`` of a typical turn with its search words
   (as shipped) and without them (``texts.search_columns`` switched off), interleaved in rounds in
   the same run; the difference is what search adds to every stored create. ``store:
   false`` requests never reach the store, so they pay nothing.
2. Reads on ``--rows`` stored responses: the first page of ``GET /v1/responses``, filtered
   and searched pages, a page deep in the list, a graph. Each is the median wall time of
   the store call (what the route spends in the database), in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from continuo.store.base import ResponseQuery
from continuo.store.ops import texts
from continuo.store.ops.responses import item_rows, response_row
from continuo.store.schema import INPUT, OUTPUT, items, responses
from continuo.store.sql import SQLStore

WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa".split()
MODELS = ["gpt-4o-mini"] * 60 + ["gpt-4o"] * 30 + ["llama-3-8b"] * 9 + ["rare-model"]


def turn(i: int, created_at: int, previous: str | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A response about the size the server stores (about 1.5 KB of JSON) and its input."""
    said = " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(12)) + f" note{i}"
    response = {
        "id": f"resp_{i:012d}{'0' * 36}",
        "object": "response",
        "created_at": created_at,
        "status": "failed" if i % 50 == 0 else "completed",
        "background": i % 10 == 0,
        "error": None,
        "incomplete_details": None,
        "instructions": "You are a helpful assistant.",
        "max_output_tokens": None,
        "model": MODELS[i % len(MODELS)],
        "output": [
            {
                "id": f"msg_out_{i}",
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": f"Answer {i}: " + said, "annotations": []}],
            }
        ],
        "parallel_tool_calls": True,
        "previous_response_id": previous,
        "reasoning": {"effort": None, "summary": None},
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": {
            "input_tokens": 20,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 30,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 50,
        },
        "metadata": {"team": ["red", "blue", "green"][i % 3], "run": str(i % 1000)},
    }
    given = [
        {"id": f"msg_in_{i}", "type": "message", "role": "user", "content": [{"type": "input_text", "text": said}]}
    ]
    return response, given


# -- 1. what search adds to a stored create ---------------------------------------------------


async def create_cost(store: SQLStore, calls: int, rounds: int) -> tuple[float, float]:
    """Median CPU microseconds per stored create: (with the search text, without it)."""
    shipped = texts.search_columns
    nothing = {"search_words": None, "preview": None}
    per_call: dict[bool, list[float]] = {True: [], False: []}
    n = 0
    for _ in range(rounds):
        for with_text in (True, False):
            texts.search_columns = shipped if with_text else (lambda *_args: nothing)  # type: ignore[assignment]
            start = time.process_time()
            for _ in range(calls):
                response, given = turn(n + 10_000_000, int(time.time()))
                n += 1
                await store.save_response("bench", response, given)
            per_call[with_text].append((time.process_time() - start) / calls * 1e6)
    texts.search_columns = shipped
    return statistics.median(per_call[True]), statistics.median(per_call[False])


# -- 2. reads on many rows --------------------------------------------------------------------


def _fill(conn: Any, first: int, count: int, start_s: int) -> None:
    response_rows, item_values = [], []
    for i in range(first, first + count):
        previous = f"resp_{i - 1:012d}{'0' * 36}" if i % 100 else None  # chains of 100 turns
        response, given = turn(i, start_s + i // 3, previous)
        response_rows.append(response_row("bench", response, given, response["output"]))
        item_values += item_rows(response["id"], INPUT, given) + item_rows(response["id"], OUTPUT, response["output"])
    conn.execute(insert(responses), response_rows)
    conn.execute(insert(items), item_values)


async def timed(call: Callable[[], Awaitable[Any]], repeats: int) -> float:
    await call()  # warm
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        await call()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds) * 1000


async def reads(store: SQLStore, rows: int, repeats: int) -> list[tuple[str, float, int]]:
    start_s = int(time.time()) - rows
    for first in range(0, rows, 5000):
        await store._write(_fill, first, min(5000, rows - first), start_s)
    if not store.is_sqlite:
        # What autovacuum does after a bulk load: without statistics the planner guesses.
        await store._write(lambda conn: conn.exec_driver_sql("ANALYZE responses"))
    middle = f"resp_{rows // 2:012d}{'0' * 36}"
    chained = f"resp_{rows - 50:012d}{'0' * 36}"
    cases: list[tuple[str, ResponseQuery]] = [
        ("first page (20, newest first)", ResponseQuery()),
        ("first page, 100", ResponseQuery(limit=100)),
        ("page after the middle row", ResponseQuery(after=middle)),
        ("model = a 1% model", ResponseQuery(model="rare-model")),
        ("status = failed (2%)", ResponseQuery(status="failed")),
        ("background = true (10%)", ResponseQuery(background=True)),
        ("metadata[team] = red (33%)", ResponseQuery(metadata=[("team", "red")])),
        ("metadata[run] = 7 (0.1%)", ResponseQuery(metadata=[("run", "7")])),
        ("metadata[run] = none (0%)", ResponseQuery(metadata=[("run", "none")])),
        (
            "created in one hour",
            ResponseQuery(created_after=start_s + rows // 6, created_before=start_s + rows // 6 + 3600),
        ),
        ("q = a word in every row", ResponseQuery(q="alpha")),
        ("q = one row's word", ResponseQuery(q=f"note{rows // 2}")),
        ("q = one row's word, prefix", ResponseQuery(q=f"note{rows // 20}")),
        ("q + model", ResponseQuery(q="bravo", model="gpt-4o")),
    ]
    found = []
    for name, query in cases:
        page = await store.list_responses("bench", query)
        found.append((name, await timed(lambda q=query: store.list_responses("bench", q), repeats), len(page.data)))
    graph = await store.response_graph("bench", chained, 1000)
    size = len(graph.nodes) if graph else 0
    found.append(
        ("graph of a 100-turn chain", await timed(lambda: store.response_graph("bench", chained, 1000), repeats), size)
    )
    return found


async def run(database: str, rows: int, calls: int, rounds: int, repeats: int) -> None:
    with tempfile.TemporaryDirectory(prefix="continuo-console-") as tmp:
        if database == "sqlite":
            url, drop = f"sqlite:///{Path(tmp) / 'console.db'}", None
        else:
            from tests.support.postgres import create_database, drop_database

            url, drop = create_database(), drop_database
        store = SQLStore(url)
        await store.open()
        try:
            with_text, without = await create_cost(store, calls, rounds)
            print(f"\n{database}: stored create, CPU per call (median of {rounds} rounds of {calls})")
            print(f"  with search text {with_text:8.1f} us\n  without          {without:8.1f} us")
            print(f"  search adds      {with_text - without:8.1f} us ({(with_text / without - 1) * 100:+.0f}%)")
            print(f"\n{database}: reads on {rows:,} stored responses (median of {repeats}, ms)")
            for name, ms, count in await reads(store, rows, repeats):
                print(f"  {name:34} {ms:8.2f} ms  ({count} rows)")
        finally:
            await store.close()
            if drop is not None:
                drop(url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--calls", type=int, default=300, help="stored creates per round and variant")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    for database in ("sqlite", "postgresql") if args.database == "both" else (args.database,):
        asyncio.run(run(database, args.rows, args.calls, args.rounds, args.repeats))


if __name__ == "__main__":
    main()

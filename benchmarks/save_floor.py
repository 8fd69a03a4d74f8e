"""What a save costs by itself: ``save_sqlite`` (what the server runs to store a finished
response outside a conversation: its rows, their JSON and search text, and SQLite's
statements) in a loop on a fresh, migrated file, with nothing around it: no HTTP, no event
loop, no response building, no group-commit machinery.

    .venv/bin/python -m benchmarks.save_floor [--n 20000] [--groups 1,2,4,8,16]

Each commit holds ``group`` saves, each in a savepoint, as the server's group commit does
(store/commit_group.py: at c=16 the benchmark's saves come about two to a commit). The
response is the benchmark's: a one-sentence input and a 32-token answer. Printed per save:
the process's user and system CPU time and the bytes it wrote (``wchar``: the WAL, and
the checkpoints that copy it into the database). The schema variants drop what a save
writes besides its two rows (each index and the search trigger is a b-tree of its own
that the save changes a page of), to show what each costs; they are measurements, not
proposals: the listing, item lookups and search need them.

This is a floor under storing's share of a request's CPU: whatever the rest of the server
does, a stored response costs at least this much more than an unstored one
(docs/performance.md, "the CPU targets against their floors").
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

from continuo.ids import new_id
from continuo.store.engine import Database
from continuo.store.ops.responses import save_sqlite

VARIANTS: dict[str, list[str]] = {
    "schema as shipped": [],
    "without ix_items_item_id": ["DROP INDEX ix_items_item_id"],
    "without the search trigger": ["DROP TRIGGER responses_search_insert"],
    "without ix_responses_project_created": ["DROP INDEX ix_responses_project_created"],
    "without all three": [
        "DROP INDEX ix_items_item_id",
        "DROP TRIGGER responses_search_insert",
        "DROP INDEX ix_responses_project_created",
    ],
}

_TEXT = "tok " * 32


def _response() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    rid = new_id("resp")
    output = {
        "id": new_id("msg"),
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": _TEXT, "annotations": [], "logprobs": []}],
    }
    response: dict[str, Any] = {
        "id": rid,
        "object": "response",
        "created_at": 1_796_139_198,
        "status": "completed",
        "background": False,
        "completed_at": 1_796_139_198,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "metadata": {},
        "model": "bench-model",
        "output": [output],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": {
            "input_tokens": 11,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 32,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 43,
        },
    }
    item = {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "Say hello in one short sentence."}],
        "id": new_id("msg"),
    }
    return response, [item]


def _wchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


def measure(variant: list[str], n: int, group: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="continuo-save-floor-") as tmp:
        path = f"{tmp}/floor.db"
        database = Database(f"sqlite:///{path}")
        asyncio.run(database.open())  # the migrations: the shipped schema
        asyncio.run(database.close())
        raw = sqlite3.connect(path, isolation_level=None)
        for pragma in ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA foreign_keys=ON"):
            raw.execute(pragma)
        for statement in variant:
            raw.execute(statement)
        saves = [_response() for _ in range(n)]

        def run(batch: list[tuple[dict[str, Any], list[dict[str, Any]]]]) -> None:
            for start in range(0, len(batch), group):
                raw.execute("BEGIN IMMEDIATE")
                for response, items in batch[start : start + group]:
                    raw.execute("SAVEPOINT member")
                    save_sqlite(raw, "", response, items)
                    raw.execute("RELEASE member")
                raw.execute("COMMIT")

        warm = n // 10
        run(saves[:warm])  # the tables' right edges exist before the counting starts
        before, wrote = resource.getrusage(resource.RUSAGE_SELF), _wchar()
        run(saves[warm:])
        after, wrote = resource.getrusage(resource.RUSAGE_SELF), _wchar() - wrote
        stored = raw.execute("SELECT count(*) FROM responses").fetchone()[0]
        raw.close()
    if stored != n:
        raise RuntimeError(f"{stored} of {n} saves landed")
    counted = n - warm
    return {
        "user_us": (after.ru_utime - before.ru_utime) / counted * 1e6,
        "sys_us": (after.ru_stime - before.ru_stime) / counted * 1e6,
        "bytes": wrote / counted,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.save_floor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="saves per measurement")
    parser.add_argument("--groups", default="1,2,4,8,16", help="saves per commit, for the shipped schema")
    args = parser.parse_args(argv)
    print(f"SQLite {sqlite3.sqlite_version}; {args.n} saves a row, CPU and bytes written per save")
    print("| schema | saves per commit | user (µs) | system (µs) | CPU (µs) | bytes written |")
    print("|---|---:|---:|---:|---:|---:|")
    rows = [("schema as shipped", int(group)) for group in args.groups.split(",")]
    rows += [(name, 2) for name in VARIANTS if name != "schema as shipped"]
    for name, group in rows:
        found = measure(VARIANTS[name], args.n, group)
        user, system = found["user_us"], found["sys_us"]
        cells = f"{user:.1f} | {system:.1f} | {user + system:.1f} | {found['bytes']:,.0f}"
        print(f"| {name} | {group} | {cells} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What a run does (the full plan and the quick one), the request shapes' constants and
the run's log line."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

INPUT = "Say hello in one short sentence."
MODEL = "bench-model"
SLOW_MODEL = "slow-bench-model"


@dataclass
class Plan:
    c1: int = 2000  # requests at concurrency 1
    cn: int = 5000  # requests at concurrency 16 and 64
    concurrencies: tuple[int, ...] = (16, 64)
    warmup: int = 200
    stream_c1: int = 1000
    stream_cn: int = 3000
    stream_concurrency: int = 16
    chain_depths: tuple[int, ...] = (1, 10, 100, 1000)
    chain_n: int = 200  # measured requests per depth
    memory_streams: int = 1000
    tokens: int = 32
    slow_interval: float = 1.0
    slow_tokens: int = 120
    paging_depth: int = 5000  # turns in the chain another client pages
    paging_n: int = 2000  # short requests at c=1, alone and while paging
    paging_limit: int = 100  # input_items page size
    conversation_sizes: tuple[int, ...] = (1, 100, 10000)  # items in the conversation
    conversation_n: int = 200  # measured creates per size (and as many chained ones)
    ws_turns: int = 20  # turns of one tool loop
    ws_loops: int = 15  # measured loops per case
    mcp_n: int = 200  # measured requests per MCP timing
    workers_n: int = 10000  # stored non-streamed requests at c=64, per worker count
    workers_concurrency: int = 64
    lock_samples: int = 2000  # timed saves for the SQLite write lock's hold time


QUICK = Plan(
    c1=200,
    cn=600,
    warmup=50,
    stream_c1=100,
    stream_cn=300,
    chain_depths=(1, 10, 100),
    chain_n=30,
    memory_streams=200,
    paging_depth=300,
    paging_n=200,
    conversation_sizes=(1, 100, 1000),
    conversation_n=30,
    ws_loops=3,
    mcp_n=30,
    workers_n=1000,
    lock_samples=200,
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

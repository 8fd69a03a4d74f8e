"""The benchmark's conversations, WebSocket, MCP and workers tables and the workers' model
of N cores (the pure parts: no server, no benchmark run)."""

from __future__ import annotations

from typing import Any

from benchmarks.report import markdown
from benchmarks.scenarios.workers import writer_model
from tests.support.report_docs import report_doc


def _lat(p50: float, p99: float, **more: Any) -> dict[str, Any]:
    return {"p50_ms": p50, "p99_ms": p99, **more}


def test_writer_model_divides_one_cores_rate_into_the_writers_cap() -> None:
    model = writer_model(0.5, 0.25)  # 2,000 req/s per core, 4,000 req/s for the writer
    assert model == {"per_core_req_s": 2000.0, "writer_cap_req_s": 4000.0, "cores_to_cap": 2.0}
    assert writer_model(None, 0.25)["cores_to_cap"] is None


def test_report_prints_the_four_added_tables() -> None:
    conversations = {
        "n": 200,
        "per_size": {
            "100": {
                "items": 100,
                "chain_turns": 50,
                "chain_items": 100,
                "conversation": _lat(3.0, 5.0),
                "chain": _lat(2.0, 4.5),
                "added_p50_ms": 1.0,
                "added_p99_ms": 0.5,
            }
        },
    }
    ws_row = {"turns_measured": 300, "added_p50_ms": 1.5, "added_p99_ms": 3.0, "server_cpu_ms_per_turn": 1.25}
    websocket = {
        "turns": 20,
        "loops": 15,
        "baseline": {"last_p50_ms": 0.25},
        "ws_store_false": _lat(1.75, 3.25, **ws_row),
    }
    mcp = {
        "n": 200,
        "direct": _lat(4.0, 6.0),
        "model": _lat(0.5, 1.0),
        "plain": _lat(1.5, 2.0),
        "mcp": _lat(9.0, 15.0),
        "added_p50_ms": 3.0,
        "added_p99_ms": 6.0,
    }
    point = {"n": 10000, "per_s": 1000.0, "p99_ms": 90.0, "server_cpu_ms_per_req": 0.5, "errors": 0}
    workers = {
        "concurrency": 64,
        "one_worker": {**point, "pinned_core": 0},
        "two_workers": {**point, "per_s": 1800.0},
        "scaling": 1.8,
        "errors": 0,
        "lock_hold": {"samples": 2000, "p50_ms": 0.2, "p99_ms": 0.5, "mean_ms": 0.25},
        "model": writer_model(0.5, 0.25),
    }
    text = markdown(report_doc(conversations=conversations, websocket=websocket, mcp=mcp, workers=workers))
    assert "| 100 | 50 (100) | 3.00 | 2.00 | +1.00 | 5.00 | 4.50 | +0.50 |" in text
    assert "| one WebSocket, `store: false` | 300 | 1.75 | +1.50 | 3.25 | +3.00 | 1.25 |" in text
    assert "| **added** | **+3.00** | **+6.00** |" in text
    assert "| 2 | 10,000 | 1,800 | 90.00 | 0.50 | 0 | any (not pinned) |" in text
    assert "Scaling 2 workers / 1 worker: 1.80x; errors: 0." in text
    assert (
        "one core handles ~2,000 stored req/s; the single SQLite writer caps at ~4,000 req/s, so past about 2 cores"
        in text
    )

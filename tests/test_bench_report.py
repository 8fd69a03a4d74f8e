"""The benchmark's paging row: which pages count, and how the report prints it (no server,
no benchmark run: the pure parts)."""

from __future__ import annotations

from typing import Any

from benchmarks.report import markdown
from benchmarks.scenarios.paging import Pager
from tests.support.report_docs import report_doc


def _batch(p50: float, p99: float, n: int = 2000) -> dict[str, Any]:
    return {"n": n, "ok": n, "p50_ms": p50, "p99_ms": p99, "elapsed_s": 2.0, "other_processes_cpu_s": 0.0}


def test_pager_counts_only_the_pages_and_passes_that_ended_in_the_window() -> None:
    pager = Pager(pages=[(0.5, 0.9), (1.2, 0.002), (1.4, 0.004), (3.1, 0.5)], passes=[0.5, 1.4, 3.1])
    pager.items_per_pass = 9999
    stats = pager.stats(1.0, 3.0)
    assert stats["pages"] == 2
    assert stats["passes"] == 1
    assert stats["p50_ms"] == 3.0
    assert stats["pages_per_s"] == 1.0
    assert stats["items_per_pass"] == 9999


def test_report_prints_the_paging_table_with_both_runs_and_their_ratio() -> None:
    paging = {
        "depth": 5000,
        "page_limit": 100,
        "short_alone": _batch(1.0, 1.5),
        "short_while_paging": _batch(1.2, 3.0),
        "p50_ratio": 1.2,
        "p99_ratio": 2.0,
        "pager": {"pages": 700, "passes": 7, "items_per_pass": 9999, "p50_ms": 2.5, "p99_ms": 4.25, "errors": 0},
    }
    text = markdown(report_doc(paging=paging))
    assert "| Short requests while another client pages a 5,000-turn chain | Alone | While paging | Ratio |" in text
    assert "| p50 latency, c=1 (ms) | 1.00 | 1.20 | 1.20x |" in text
    assert "| p99 latency, c=1 (ms) | 1.50 | 3.00 | 2.00x |" in text
    assert "| the pager's page latency p50 / p99 (ms) | - | 2.50 / 4.25 | - |" in text
    assert "input_items?limit=100" in text and "(9,999 items)" in text and "700 pages, 7 whole passes" in text
    assert "errors" not in text


def test_report_without_a_paging_run_has_no_paging_table() -> None:
    assert "pages a" not in markdown(report_doc())


def test_cpu_ratio_targets_of_issue_18_are_computed_and_printed() -> None:
    from benchmarks.report import targets

    def cpu(ms: float) -> dict[str, Any]:
        return {**_batch(1.0, 2.0), "server_cpu_ms_per_req": ms}

    doc = report_doc(
        non_streamed={
            "baseline": {"c1": cpu(0.05)},
            "store_true": {"c1": cpu(0.65), "c16": cpu(0.52), "c64": cpu(0.6)},
            "store_false": {"c1": cpu(0.5), "c16": cpu(0.4), "c64": cpu(0.5)},
        },
        streamed={"continuo": {"c16": cpu(0.84)}},
    )
    doc["targets"] = found = targets(doc)
    # Only the targets table is printed here: the scenarios' own tables need whole runs.
    doc = report_doc(targets=found)
    assert found["store_cpu_ratio"] == {"target": 1.3, "by_concurrency": {"c1": 1.3, "c16": 1.3}, "met": True}
    assert found["stream_cpu_ratio"] == {"target": 2.0, "ratio": 2.1, "met": False}
    text = markdown(doc)
    stored = "| server CPU, `store: true` / `store: false` (same request) | <= 1.3x | c=1: 1.30x, c=16: 1.30x | yes |"
    assert stored in text
    assert "| server CPU, 32-token stream / non-streamed `store: false` (c=16) | <= 2.0x | 2.10x | no |" in text

"""A benchmark results document with the fields every report needs, for the report's tests."""

from __future__ import annotations

from typing import Any


def report_doc(**sections: Any) -> dict[str, Any]:
    return {
        "machine": {
            "cores": 2,
            "cpu_model": "cpu",
            "memory_gib": 1,
            "implementation": "CPython",
            "python": "3.11",
            "kernel": "6",
        },
        "pinning": {"continuo": {"core": 0}, "upstream": {"core": 1}, "loadgen": {"core": 1}},
        "mode": "full",
        "generated_at": "2026-01-01T00:00:00Z",
        "duration_s": 1.0,
        "plan": {},
        **sections,
    }

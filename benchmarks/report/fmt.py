"""Number formatting and the machine line, shared by the tables and the chart."""

from __future__ import annotations

from typing import Any

CPU_TARGET_MS = 1.0
ADDED_P50_TARGET_MS = 1.0
STORE_RATIO_TARGET = 1.3
STREAM_RATIO_TARGET = 2.0


def num(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and 0 < abs(value) < 0.1:
        return f"{value:.3f}"
    if isinstance(value, float) and value != value:  # NaN
        return "-"
    if isinstance(value, (int, float)) and abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def ratio(base: Any, value: Any) -> str:
    if not base or not isinstance(value, (int, float)):
        return "-"
    return f"{value / base:.2f}x"


def delta(base: Any, value: Any) -> str:
    if base is None or not isinstance(value, (int, float)):
        return "-"
    return f"{value - base:+.2f}"


def metric_row(label: str, metric: str, base: Any, value: Any) -> str:
    return f"| {label} | {metric} | {num(base)} | {num(value)} | {delta(base, value)} | {ratio(base, value)} |"


def machine_line(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    pin = doc["pinning"]

    def core(name: str) -> str:
        value = pin[name]["core"]
        return "any core" if value is None else f"core {value}"

    return (
        f"{m['cores']} cores ({m['cpu_model']}), {m['memory_gib']} GiB, {m['implementation']} {m['python']}, "
        f"Linux {m['kernel']}. Continuo on {core('continuo')}; fake upstream and load generator (aiohttp) on "
        f"{core('upstream')}. Mode: {doc['mode']}, {doc['generated_at']}, {doc['duration_s']} s.{source(doc)}"
    )


def source(doc: dict[str, Any]) -> str:
    source = doc.get("source") or {}
    if not source.get("commit"):
        return ""
    changed = source.get("uncommitted") or []
    return f" Continuo at commit {source['commit']}" + (
        f" plus uncommitted changes to {len(changed)} file(s)." if changed else "."
    )


def mib(kib: Any) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f}"

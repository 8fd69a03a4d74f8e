"""py-spy's raw stacks summarised into hot spots (``--profile``), and their tables."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.report.fmt import num


def profile_lines(prof: dict[str, Any], doc: dict[str, Any]) -> list[str]:
    cpu = (doc.get("non_streamed") or {}).get("store_true", {}).get("c16", {}).get("main_thread_cpu_ms_per_req")

    def ms(pct: float) -> str:
        return f"{pct * cpu / 100:.3f}" if cpu else "-"

    lines = [
        f"Profile (py-spy `--gil`: the thread holding the GIL, {prof['samples']:,} samples at 250 Hz, "
        f'{prof["requests_during"]:,} `store: true` requests at c=16). "ms/req" spreads the event-loop '
        f"thread's measured CPU per request ({num(cpu)} ms at c=16) by share of samples.",
        "",
        "| Package (Continuo: module) | Self % | Self ms/req | Total % |",
        "|---|---:|---:|---:|",
    ]
    for name, self_pct, total_pct in prof["self_by_package"][:15]:
        lines.append(f"| {name} | {self_pct:.1f} | {ms(self_pct)} | {total_pct:.1f} |")
    lines += ["", "| Function | Self % | Total % |", "|---|---:|---:|"]
    for name, self_pct, total_pct in prof["self_by_function"][:15]:
        lines.append(f"| `{name}` | {self_pct:.1f} | {total_pct:.1f} |")
    lines += ["", "| Continuo function (inclusive) | Total % | ms/req |", "|---|---:|---:|"]
    for name, total_pct in prof["inclusive_continuo"][:15]:
        lines.append(f"| `{name}` | {total_pct:.1f} | {ms(total_pct)} |")
    lines += [
        "",
        "SQLAlchemy's async engine runs its work in greenlets, which py-spy shows as stacks of their own: the "
        "Continuo functions above do not include that part (see sqlalchemy's total in the package table).",
    ]
    busy = prof.get("sqlite_busy")
    if busy and "avg_in_sqlite" in busy:
        lines += [
            "",
            f"`py-spy dump --native`, {busy['dumps']} times under the same load: on average "
            f"{busy['avg_threads']:.1f} threads, {busy['avg_in_sqlite']:.1f} of them inside SQLite, "
            f"{busy['avg_in_busy_handler']:.1f} sleeping in SQLite's busy handler (`sqlite3InvokeBusyHandler` -> "
            "`usleep`: waiting for another connection's write lock).",
        ]
    lines.append("")
    return lines


FRAME = re.compile(r"^(?P<func>.*) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")


def _relative(path: str) -> str:
    """py-spy names files relative to sys.path (``asyncio/tasks.py``); full paths too."""
    for marker in ("site-packages/", "/src/", "/lib/python3.11/", "/lib/python3.12/", "/lib/python3.13/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def _package(path: str) -> str:
    parts = _relative(path).removesuffix(".py").split("/")
    if parts[0] == "continuo":
        return ".".join(parts)
    return parts[0]


def summarize_profile(raw: Path, rate: int = 250, top: int = 30) -> dict[str, Any]:
    """Self and inclusive time per function (line numbers merged) and self time per package
    (Continuo: per module) from py-spy's raw (collapsed) stacks; percentages of all samples."""
    self_fn: Counter[str] = Counter()
    incl_fn: Counter[str] = Counter()
    self_pkg: Counter[str] = Counter()
    incl_pkg: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = []
        for part in stack.split(";"):
            match = FRAME.match(part)
            if match is None or part.startswith(("thread (", "process ")):
                continue
            frames.append((match.group("func"), _relative(match.group("file"))))
        if not frames:
            continue
        total += count
        func, path = frames[-1]
        self_fn[f"{func} ({path})"] += count
        self_pkg[_package(path)] += count
        for name in {f"{f} ({p})" for f, p in frames}:
            incl_fn[name] += count
        for name in {_package(p) for _, p in frames}:
            incl_pkg[name] += count

    def pct(value: int) -> float:
        return round(value * 100 / total, 2) if total else 0.0

    continuo = [(k, v) for k, v in incl_fn.most_common() if "(continuo/" in k]
    return {
        "samples": total,
        "busy_seconds": round(total / rate, 2),
        "self_by_package": [(k, pct(v), pct(incl_pkg[k])) for k, v in self_pkg.most_common(top)],
        "self_by_function": [(k, pct(v), pct(incl_fn[k])) for k, v in self_fn.most_common(top)],
        "inclusive_continuo": [(k, pct(v)) for k, v in continuo[:top]],
    }

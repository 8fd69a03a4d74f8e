"""Turning the results into a Markdown table, a chart and, with --profile, hot spots."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

CPU_TARGET_MS = 1.0
ADDED_P50_TARGET_MS = 1.0


def _num(value: Any, digits: int = 2) -> str:
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


def _ratio(base: Any, value: Any) -> str:
    if not base or not isinstance(value, (int, float)):
        return "-"
    return f"{value / base:.2f}x"


def _delta(base: Any, value: Any) -> str:
    if base is None or not isinstance(value, (int, float)):
        return "-"
    return f"{value - base:+.2f}"


def _row(label: str, metric: str, base: Any, value: Any) -> str:
    return f"| {label} | {metric} | {_num(base)} | {_num(value)} | {_delta(base, value)} | {_ratio(base, value)} |"


def targets(doc: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    ns = doc.get("non_streamed")
    if ns:
        stored = ns["store_true"]
        cpu = {key: stats.get("server_cpu_ms_per_req") for key, stats in stored.items()}
        # The worst point counts, c=1 (where every request pays its own wake-ups) included.
        worst = max((v for v in cpu.values() if v is not None), default=None)
        added = stored["c1"]["p50_ms"] - ns["baseline"]["c1"]["p50_ms"]
        out["cpu_ms_per_stored_response"] = {
            "target_ms": CPU_TARGET_MS,
            "by_concurrency": cpu,
            "worst": worst,
            "met": worst is not None and worst <= CPU_TARGET_MS,
        }
        out["added_p50_ms_c1"] = {
            "target_ms": ADDED_P50_TARGET_MS,
            "store_true": round(added, 3),
            "store_false": round(ns["store_false"]["c1"]["p50_ms"] - ns["baseline"]["c1"]["p50_ms"], 3),
            "met": added <= ADDED_P50_TARGET_MS,
        }
    return out


def _machine_line(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    pin = doc["pinning"]

    def core(name: str) -> str:
        value = pin[name]["core"]
        return "any core" if value is None else f"core {value}"

    return (
        f"{m['cores']} cores ({m['cpu_model']}), {m['memory_gib']} GiB, {m['implementation']} {m['python']}, "
        f"Linux {m['kernel']}. Continuo on {core('continuo')}; fake upstream and load generator (aiohttp) on "
        f"{core('upstream')}. Mode: {doc['mode']}, {doc['generated_at']}, {doc['duration_s']} s.{_source(doc)}"
    )


def _source(doc: dict[str, Any]) -> str:
    source = doc.get("source") or {}
    if not source.get("commit"):
        return ""
    changed = source.get("uncommitted") or []
    return f" Continuo at commit {source['commit']}" + (
        f" plus uncommitted changes to {len(changed)} file(s)." if changed else "."
    )


def _batches(doc: Any) -> list[dict[str, Any]]:
    """Every measured batch's stats in the document."""
    found: list[dict[str, Any]] = []
    if isinstance(doc, dict):
        if "other_processes_cpu_s" in doc:
            found.append(doc)
        for value in doc.values():
            found += _batches(value)
    return found


def quietness(doc: dict[str, Any]) -> dict[str, Any]:
    """CPU that processes other than the benchmark's used during the measured batches, as a
    share of one core: over all batches, and the worst batch of at least 2 s (shorter
    ones are too short for /proc/stat's 10 ms ticks)."""
    batches = [b for b in _batches(doc) if b.get("elapsed_s")]
    if not batches:
        return {}
    total = sum(b["other_processes_cpu_s"] for b in batches) * 100 / sum(b["elapsed_s"] for b in batches)
    long = [b["other_processes_cpu_s"] * 100 / b["elapsed_s"] for b in batches if b["elapsed_s"] >= 2]
    return {"batches": len(batches), "overall_pct": round(total, 1), "worst_pct": round(max(long), 1) if long else None}


def markdown(doc: dict[str, Any]) -> str:
    lines: list[str] = [f"**Machine:** {_machine_line(doc)}", ""]
    quiet = doc.get("quietness") or {}
    if quiet:
        worst = quiet["worst_pct"] if quiet["worst_pct"] is not None else quiet["overall_pct"]
        verdict = "quiet" if max(worst, quiet["overall_pct"]) < 10 else "NOT QUIET: other work competed for the cores"
        lines += [
            f"Other processes on the machine during the {quiet['batches']} measured batches used "
            f"{quiet['overall_pct']}% of one core overall, {_num(quiet['worst_pct'])}% in the worst batch of 2 s "
            f"or more ({verdict}).",
            "",
        ]
    plan = doc["plan"]
    ns = doc.get("non_streamed")
    st = doc.get("streamed")
    if ns or st:
        lines += [
            "| Scenario | Metric | Direct to upstream | Continuo | Continuo - direct | Ratio |",
            "|---|---|---:|---:|---:|---:|",
        ]
    if ns:
        base = ns["baseline"]
        for name, label in (
            ("store_true", "Non-streamed, `store: true`"),
            ("store_false", "Non-streamed, `store: false`"),
        ):
            data = ns[name]
            rows: list[tuple[str, Any, Any]] = [
                ("p50 latency, c=1 (ms)", base["c1"]["p50_ms"], data["c1"]["p50_ms"]),
                ("p99 latency, c=1 (ms)", base["c1"]["p99_ms"], data["c1"]["p99_ms"]),
            ]
            for c in plan["concurrencies"]:
                key = f"c{c}"
                rows.append((f"requests/s, c={c}", base[key]["per_s"], data[key]["per_s"]))
                rows.append((f"p99 latency, c={c} (ms)", base[key]["p99_ms"], data[key]["p99_ms"]))
            for key in ("c1", *(f"c{c}" for c in plan["concurrencies"])):
                rows.append(
                    (
                        f"server CPU per request, {key.replace('c', 'c=')} (ms)",
                        base[key]["server_cpu_ms_per_req"],
                        data[key]["server_cpu_ms_per_req"],
                    )
                )
            for key in [f"c{c}" for c in plan["concurrencies"]]:
                opened = data[key].get("upstream_connections_opened")
                if opened is not None and data[key].get("ok"):
                    rows.append(
                        (
                            f"new upstream connections per 1,000 requests, {key.replace('c', 'c=')}",
                            None,
                            round(opened * 1000 / data[key]["ok"], 1),
                        )
                    )
            for key in [f"c{c}" for c in plan["concurrencies"]][:1]:
                rows.append(
                    (
                        f".. of it event-loop thread / other threads, {key.replace('c', 'c=')} (ms)",
                        None,
                        f"{_num(data[key].get('main_thread_cpu_ms_per_req'))} / "
                        f"{_num(data[key].get('other_threads_cpu_ms_per_req'))}",
                    )
                )
            for i, (metric, b, v) in enumerate(rows):
                lines.append(_row(label if i == 0 else "", metric, b, v))
    if st:
        base, data = st["baseline"], st["continuo"]
        cn = f"c{plan['stream_concurrency']}"
        rows = [
            ("first event p50, c=1 (ms)", base["c1"]["first_p50_ms"], data["c1"]["first_p50_ms"]),
            ("first event p99, c=1 (ms)", base["c1"]["first_p99_ms"], data["c1"]["first_p99_ms"]),
            ("last event p50, c=1 (ms)", base["c1"]["last_p50_ms"], data["c1"]["last_p50_ms"]),
            ("last event p99, c=1 (ms)", base["c1"]["last_p99_ms"], data["c1"]["last_p99_ms"]),
            (f"streams/s, c={plan['stream_concurrency']}", base[cn]["per_s"], data[cn]["per_s"]),
            (f"last event p99, c={plan['stream_concurrency']} (ms)", base[cn]["last_p99_ms"], data[cn]["last_p99_ms"]),
            (
                f"server CPU per stream, c={plan['stream_concurrency']} (ms)",
                base[cn]["server_cpu_ms_per_req"],
                data[cn]["server_cpu_ms_per_req"],
            ),
        ]
        label = f"Streamed, {st['tokens']} tokens, `store: true`"
        for i, (metric, b, v) in enumerate(rows):
            lines.append(_row(label if i == 0 else "", metric, b, v))
    if ns or st:
        lines += [
            "",
            "Direct = the same request shape sent straight to the fake upstream's `/v1/chat/completions`; its "
            "\"server CPU\" is the fake upstream's own. Continuo's CPU is its process only (all threads), "
            "from `/proc/<pid>/task/*/schedstat` (or `/proc/<pid>/stat` if a thread exited meanwhile).",
        ]
        if st:
            lines.append(
                f"A Continuo stream carries {st['events_per_stream']} SSE events "
                f"({st['delta_events_per_stream']} `response.output_text.delta`); the direct stream "
                f"{st['tokens'] + 4} chunks."
            )
        lines.append("")

    ch = doc.get("chains")
    if ch:
        lines += [
            "| Chain depth (turns) | Messages sent upstream | Direct p50 (ms) | Continuo p50 (ms) | Added p50 (ms) "
            "| Continuo p50 / depth 1 | Continuo CPU per request (ms) |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for depth in ch["depths"]:
            d = ch["per_depth"][str(depth)]
            lines.append(
                f"| {depth:,} | {d['upstream_messages']:,} | {_num(d['baseline']['p50_ms'])} | "
                f"{_num(d['continuo']['p50_ms'])} | {_num(d['added_p50_ms'])} | {d['ratio_to_depth_1']:.2f}x | "
                f"{_num(d['continuo']['server_cpu_ms_per_req'])} |"
            )
        scaling = ch.get("scaling", {})
        note = (
            "Each measured request chains (`previous_response_id`, `store: true`) on the last id of a chain that deep."
        )
        if "exponent" in scaling:
            a, b = scaling["between"]
            verdict = "linear or better" if scaling["linear_or_better"] else "WORSE THAN LINEAR"
            note += (
                f" Growth of the p50 above depth 1 between depths {a:,} and {b:,} goes as depth^"
                f"{scaling['exponent']:.2f} ({verdict})."
            )
        lines += ["", note, ""]

    mem = doc.get("memory")
    if mem:
        lines += [
            "| Memory (Continuo RSS) | MiB |",
            "|---|---:|",
            f"| at start | {_mib(mem.get('startup_rss_kib'))} |",
            f"| idle, before the streams (after the other scenarios) | {_mib(mem['idle_rss_kib'])} |",
            f"| with {mem['streams_with_first_event']:,} of {mem['streams']:,} slow streams open | "
            f"{_mib(mem['rss_with_streams_kib'])} |",
            f"| added by the open streams | {_mib(mem['delta_kib'])} "
            f"({_num(mem['kib_per_stream'], 1)} KiB per stream that got its first event, "
            f"{_num(mem['kib_per_request'], 1)} KiB per open request) |",
            f"| after they closed | {_mib(mem['rss_after_close_kib'])} |",
            "",
        ]
        if mem.get("streams_with_first_event", 0) < mem["streams"]:
            lines += [
                f"Only {mem['streams_with_first_event']:,} of {mem['streams']:,} streams got their first event "
                f"(no progress for 5 s): {mem.get('client_connections_open')} client connections were open to "
                f"Continuo but only {mem.get('upstream_connections_open')} from Continuo to the upstream; the rest "
                "waited inside Continuo. The RSS above is with all client connections open.",
                "",
            ]
    storage = doc.get("storage")
    if storage:
        lines += [
            "| Storage (SQLite, one chain) | Bytes | Bytes per turn |",
            "|---|---:|---:|",
        ]
        for turns, row in storage["turns"].items():
            lines.append(f"| {int(turns):,} turns | {row['bytes']:,} | {row['bytes_per_turn']:,.0f} |")
        if ns and "db_bytes_per_stored_response" in ns["store_true"].get("c16", {}):
            lines.append(
                f"| independent `store: true` responses (c=16 batch) | - | "
                f"{ns['store_true']['c16']['db_bytes_per_stored_response']:,.0f} |"
            )
        lines += [
            "",
            "Sizes are of the main database file after `PRAGMA wal_checkpoint(TRUNCATE)` (WAL emptied into it), "
            "minus the empty database's size; a turn = a short user input and a 32-token answer.",
            "",
        ]
    tg = doc.get("targets")
    if tg and "cpu_ms_per_stored_response" in tg:
        cpu, added = tg["cpu_ms_per_stored_response"], tg["added_p50_ms_c1"]
        by = ", ".join(f"{k.replace('c', 'c=')}: {_num(v)}" for k, v in cpu["by_concurrency"].items())
        lines += [
            "| Target | Goal | Now | Met |",
            "|---|---:|---:|:---:|",
            f"| server CPU per stored non-streamed response | <= {cpu['target_ms']} ms | "
            f"{_num(cpu['worst'])} ms "
            f"({by}) | {'yes' if cpu['met'] else 'no'} |",
            f"| p50 added at c=1 (`store: true`) | <= {added['target_ms']} ms | {_num(added['store_true'])} ms "
            f"(`store: false`: {_num(added['store_false'])}) | {'yes' if added['met'] else 'no'} |",
            "",
        ]
    prof = doc.get("profile")
    if prof:
        lines += _profile_lines(prof, doc)
    return "\n".join(lines).rstrip() + "\n"


def _mib(kib: Any) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f}"


def _profile_lines(prof: dict[str, Any], doc: dict[str, Any]) -> list[str]:
    cpu = (doc.get("non_streamed") or {}).get("store_true", {}).get("c16", {}).get("main_thread_cpu_ms_per_req")

    def ms(pct: float) -> str:
        return f"{pct * cpu / 100:.3f}" if cpu else "-"

    lines = [
        f"Profile (py-spy `--gil`: the thread holding the GIL, {prof['samples']:,} samples at 250 Hz, "
        f'{prof["requests_during"]:,} `store: true` requests at c=16). "ms/req" spreads the event-loop '
        f"thread's measured CPU per request ({_num(cpu)} ms at c=16) by share of samples.",
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


def chart(doc: dict[str, Any], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no chart (pip install matplotlib)")
        return None
    fig, axes = plt.subplots(2, 3, figsize=(16, 9))
    fig.suptitle(f"Continuo benchmark ({doc['mode']}, {doc['generated_at']})\n{_machine_line(doc)[:160]}", fontsize=9)
    colors = {"direct": "#999999", "store:true": "#1f77b4", "store:false": "#ff7f0e", "continuo": "#1f77b4"}
    ns = doc.get("non_streamed")
    plan = doc["plan"]
    if ns:
        series = {"direct": ns["baseline"], "store:true": ns["store_true"], "store:false": ns["store_false"]}
        _bars(axes[0][0], series, [("c1", "p50_ms", "p50 c=1"), ("c1", "p99_ms", "p99 c=1")], colors, "ms")
        axes[0][0].set_title("Non-streamed latency, c=1")
        keys = [f"c{c}" for c in plan["concurrencies"]]
        _bars(axes[0][1], series, [(k, "per_s", k.replace("c", "c=")) for k in keys], colors, "requests/s")
        axes[0][1].set_title("Non-streamed throughput")
        _bars(
            axes[0][2],
            series,
            [(k, "server_cpu_ms_per_req", k.replace("c", "c=")) for k in ("c1", *keys)],
            colors,
            "ms CPU / request",
        )
        axes[0][2].axhline(CPU_TARGET_MS, color="red", linestyle="--", linewidth=1, label="1 ms target")
        axes[0][2].legend(fontsize=8)
        axes[0][2].set_title("Server CPU per request (direct = fake upstream)")
    st = doc.get("streamed")
    if st:
        series = {"direct": st["baseline"], "continuo": st["continuo"]}
        _bars(
            axes[1][0],
            series,
            [
                ("c1", "first_p50_ms", "first p50"),
                ("c1", "first_p99_ms", "first p99"),
                ("c1", "last_p50_ms", "last p50"),
                ("c1", "last_p99_ms", "last p99"),
            ],
            colors,
            "ms",
        )
        cn = f"c{plan['stream_concurrency']}"
        axes[1][0].set_title(
            f"Streamed ({st['tokens']} tokens), c=1; streams/s at c={plan['stream_concurrency']}: "
            f"{st['baseline'][cn]['per_s']} direct, {st['continuo'][cn]['per_s']} Continuo",
            fontsize=9,
        )
    ch = doc.get("chains")
    if ch:
        depths = ch["depths"]
        ax = axes[1][1]
        ax.plot(
            depths,
            [ch["per_depth"][str(d)]["baseline"]["p50_ms"] for d in depths],
            "o-",
            color="#999999",
            label="direct (same messages)",
        )
        ax.plot(
            depths,
            [ch["per_depth"][str(d)]["continuo"]["p50_ms"] for d in depths],
            "o-",
            color="#1f77b4",
            label="Continuo",
        )
        first = ch["per_depth"][str(depths[0])]["continuo"]["p50_ms"]
        ax.plot(depths, [first * d for d in depths], ":", color="red", linewidth=1, label="linear from depth 1")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("chain depth (turns)")
        ax.set_ylabel("p50 ms")
        ax.set_title("Chained request latency, c=1")
        ax.legend(fontsize=8)
    storage = doc.get("storage")
    ax = axes[1][2]
    if storage:
        turns = [int(t) for t in storage["turns"]]
        ax.plot(turns, [storage["turns"][str(t)]["bytes"] for t in turns], "o-", label="bytes")
        first_per = storage["turns"][str(min(turns))]["bytes_per_turn"]
        ax.plot(turns, [first_per * t for t in turns], ":", color="red", linewidth=1, label="linear")
        ax.legend(fontsize=8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("turns in the chain")
        ax.set_ylabel("bytes (after checkpoint)")
        per = storage["turns"][str(max(turns))]["bytes_per_turn"]
        title = f"SQLite size of one chain ({per:,.0f} B/turn at {max(turns):,})"
        mem = doc.get("memory")
        if mem and mem.get("rss_with_streams_kib"):
            title += (
                f"\nRSS idle {mem['idle_rss_kib'] / 1024:.0f} MiB -> {mem['rss_with_streams_kib'] / 1024:.0f} MiB "
                f"with {mem['streams_with_first_event']:,} streams"
            )
        ax.set_title(title, fontsize=9)
    for row in axes:
        for axis in row:
            axis.tick_params(labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _bars(
    ax: Any, series: dict[str, dict[str, Any]], metrics: list[tuple[str, str, str]], colors: dict[str, str], ylabel: str
) -> None:
    width = 0.8 / len(series)
    for i, (name, data) in enumerate(series.items()):
        values = [data.get(point, {}).get(metric) or 0 for point, metric, _ in metrics]
        positions = [j + i * width for j in range(len(metrics))]
        bars = ax.bar(positions, values, width, label=name, color=colors.get(name))
        ax.bar_label(bars, labels=[f"{v:.3g}" for v in values], fontsize=7)
    ax.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(metrics))])
    ax.set_xticklabels([label for _, _, label in metrics], fontsize=8)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)


def main(argv: list[str] | None = None) -> int:
    """Re-render latest.md and latest.png from a results JSON (after changing this file)."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m benchmarks.report")
    parser.add_argument("json", type=Path, nargs="?", default=Path(__file__).parent / "results" / "latest.json")
    args = parser.parse_args(argv)
    doc = json.loads(args.json.read_text())
    doc["targets"] = targets(doc)
    doc["quietness"] = quietness(doc)
    args.json.write_text(json.dumps(doc, indent=2) + "\n")
    text = markdown(doc)
    args.json.with_suffix(".md").write_text(text)
    chart(doc, args.json.with_suffix(".png"))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The Markdown tables (latest.md, the README's), the targets and the quietness check."""

from __future__ import annotations

from typing import Any

from benchmarks.report.added import added_lines
from benchmarks.report.fmt import (
    ADDED_P50_TARGET_MS,
    CPU_TARGET_MS,
    STORE_RATIO_TARGET,
    STREAM_RATIO_TARGET,
    machine_line,
    metric_row,
    mib,
    num,
)
from benchmarks.report.profile import profile_lines


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
        # Issue #18: storing costs at most 1.3x the same request unstored, at c=1 and c=16;
        # a 32-token stream at most 2x a non-streamed `store: false` request (c=16).
        unstored = ns["store_false"]
        ratios = {}
        for key in ("c1", "c16"):
            a, b = stored.get(key, {}).get("server_cpu_ms_per_req"), unstored.get(key, {}).get("server_cpu_ms_per_req")
            ratios[key] = round(a / b, 2) if a and b else None
        known = [r for r in ratios.values() if r is not None]
        out["store_cpu_ratio"] = {
            "target": STORE_RATIO_TARGET,
            "by_concurrency": ratios,
            "met": bool(known) and max(known) <= STORE_RATIO_TARGET,
        }
        streamed = (doc.get("streamed") or {}).get("continuo", {}).get("c16", {}).get("server_cpu_ms_per_req")
        plain = unstored.get("c16", {}).get("server_cpu_ms_per_req")
        if streamed and plain:
            ratio = round(streamed / plain, 2)
            met = ratio <= STREAM_RATIO_TARGET
            out["stream_cpu_ratio"] = {"target": STREAM_RATIO_TARGET, "ratio": ratio, "met": met}
    return out


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
    lines: list[str] = [f"**Machine:** {machine_line(doc)}", ""]
    quiet = doc.get("quietness") or {}
    if quiet:
        worst = quiet["worst_pct"] if quiet["worst_pct"] is not None else quiet["overall_pct"]
        verdict = "quiet" if max(worst, quiet["overall_pct"]) < 10 else "NOT QUIET: other work competed for the cores"
        lines += [
            f"Other processes on the machine during the {quiet['batches']} measured batches used "
            f"{quiet['overall_pct']}% of one core overall, {num(quiet['worst_pct'])}% in the worst batch of 2 s "
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
                        f"{num(data[key].get('main_thread_cpu_ms_per_req'))} / "
                        f"{num(data[key].get('other_threads_cpu_ms_per_req'))}",
                    )
                )
            for i, (metric, b, v) in enumerate(rows):
                lines.append(metric_row(label if i == 0 else "", metric, b, v))
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
            lines.append(metric_row(label if i == 0 else "", metric, b, v))
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
                f"| {depth:,} | {d['upstream_messages']:,} | {num(d['baseline']['p50_ms'])} | "
                f"{num(d['continuo']['p50_ms'])} | {num(d['added_p50_ms'])} | {d['ratio_to_depth_1']:.2f}x | "
                f"{num(d['continuo']['server_cpu_ms_per_req'])} |"
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

    paging = doc.get("paging")
    if paging:
        lines += paging_lines(paging)
    mem = doc.get("memory")
    if mem:
        lines += [
            "| Memory (Continuo RSS) | MiB |",
            "|---|---:|",
            f"| at start | {mib(mem.get('startup_rss_kib'))} |",
            f"| idle, before the streams (after the other scenarios) | {mib(mem['idle_rss_kib'])} |",
            f"| with {mem['streams_with_first_event']:,} of {mem['streams']:,} slow streams open | "
            f"{mib(mem['rss_with_streams_kib'])} |",
            f"| added by the open streams | {mib(mem['delta_kib'])} "
            f"({num(mem['kib_per_stream'], 1)} KiB per stream that got its first event, "
            f"{num(mem['kib_per_request'], 1)} KiB per open request) |",
            f"| after they closed | {mib(mem['rss_after_close_kib'])} |",
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
    lines += added_lines(doc)
    tg = doc.get("targets")
    if tg and "cpu_ms_per_stored_response" in tg:
        cpu, added = tg["cpu_ms_per_stored_response"], tg["added_p50_ms_c1"]
        by = ", ".join(f"{k.replace('c', 'c=')}: {num(v)}" for k, v in cpu["by_concurrency"].items())
        lines += [
            "| Target | Goal | Now | Met |",
            "|---|---:|---:|:---:|",
            f"| server CPU per stored non-streamed response | <= {cpu['target_ms']} ms | "
            f"{num(cpu['worst'])} ms "
            f"({by}) | {'yes' if cpu['met'] else 'no'} |",
            f"| p50 added at c=1 (`store: true`) | <= {added['target_ms']} ms | {num(added['store_true'])} ms "
            f"(`store: false`: {num(added['store_false'])}) | {'yes' if added['met'] else 'no'} |",
        ]
        if "store_cpu_ratio" in tg:
            store = tg["store_cpu_ratio"]
            ratios = ", ".join(
                f"{k.replace('c', 'c=')}: {'-' if v is None else f'{v:.2f}x'}"
                for k, v in store["by_concurrency"].items()
            )
            lines.append(
                f"| server CPU, `store: true` / `store: false` (same request) | <= {store['target']}x | {ratios} "
                f"| {'yes' if store['met'] else 'no'} |"
            )
        if "stream_cpu_ratio" in tg:
            stream = tg["stream_cpu_ratio"]
            lines.append(
                f"| server CPU, 32-token stream / non-streamed `store: false` (c=16) | <= {stream['target']}x "
                f"| {stream['ratio']:.2f}x | {'yes' if stream['met'] else 'no'} |"
            )
        lines.append("")
    prof = doc.get("profile")
    if prof:
        lines += profile_lines(prof, doc)
    return "\n".join(lines).rstrip() + "\n"


def paging_lines(paging: dict[str, Any]) -> list[str]:
    """Short requests alone and while another client pages a deep chain's input items."""
    alone, busy, pager = paging["short_alone"], paging["short_while_paging"], paging["pager"]

    def times(ratio: Any) -> str:
        return "-" if ratio is None else f"{ratio:.2f}x"

    lines = [
        f"| Short requests while another client pages a {paging['depth']:,}-turn chain | Alone | While paging "
        "| Ratio |",
        "|---|---:|---:|---:|",
        f"| p50 latency, c=1 (ms) | {num(alone['p50_ms'])} | {num(busy['p50_ms'])} | {times(paging['p50_ratio'])} |",
        f"| p99 latency, c=1 (ms) | {num(alone['p99_ms'])} | {num(busy['p99_ms'])} | {times(paging['p99_ratio'])} |",
        f"| the pager's page latency p50 / p99 (ms) | - | {num(pager['p50_ms'])} / {num(pager['p99_ms'])} | - |",
        "",
        f"Short `store: true` requests ({num(busy['n'])} at c=1, non-streamed), first alone, then while a second "
        f"client pages `GET /v1/responses/{{id}}/input_items?limit={paging['page_limit']}` of the last response of "
        f"a {paging['depth']:,}-turn chain ({num(pager['items_per_pass'])} items) from start to end following "
        f"`after`, over and over ({num(pager['pages'])} pages, {pager['passes']} whole passes during the batch). "
        "Input items are paged in SQL (keyset), and a SQLite read over a step budget moves off the event loop, so "
        "a ratio near 1x means the pager does not stall the loop.",
    ]
    if pager.get("errors"):
        lines.append(f"The pager got {pager['errors']} errors, e.g. {pager.get('error_samples', [''])[0]}")
    lines.append("")
    return lines

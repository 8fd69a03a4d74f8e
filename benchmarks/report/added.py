"""Tables of the scenarios added for issues 12, 14, 15 and 18: conversations, WebSocket
mode, MCP round trips and workers. Each prints one sentence saying what it measures."""

from __future__ import annotations

from typing import Any

from benchmarks.report.fmt import num


def conversation_lines(conv: dict[str, Any]) -> list[str]:
    lines = [
        f"A `store: true` non-streamed create on a conversation of 1, 100 and more items (c=1, {conv['n']:,} "
        "requests each), against the same context sent by `previous_response_id` (a chain of N/2 turns of user "
        "+ assistant; N = 1 is compared with a 1-turn chain of 2 items): the latency the conversation adds.",
        "",
        "| Conversation items | Chain turns (items) | Conversation p50 (ms) | Chain p50 (ms) | Added p50 (ms) "
        "| Conversation p99 (ms) | Chain p99 (ms) | Added p99 (ms) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in conv["per_size"].values():
        c, ch = row["conversation"], row["chain"]
        lines.append(
            f"| {row['items']:,} | {row['chain_turns']:,} ({row['chain_items']:,}) | {num(c['p50_ms'])} | "
            f"{num(ch['p50_ms'])} | {row['added_p50_ms']:+.2f} | {num(c['p99_ms'])} | {num(ch['p99_ms'])} | "
            f"{row['added_p99_ms']:+.2f} |"
        )
    return [*lines, ""]


def websocket_lines(ws: dict[str, Any]) -> list[str]:
    base = ws["baseline"]["last_p50_ms"]
    names = {
        "ws_store_false": "one WebSocket, `store: false`",
        "ws_store_true": "one WebSocket, `store: true`",
        "http_store_true": "HTTP SSE, `store: true`, one keep-alive connection",
    }
    lines = [
        f"Per turn of a {ws['turns']}-turn tool loop ({ws['loops']} loops per case; each turn sends one new item "
        "chained with `previous_response_id`): latency to the terminal event minus the direct streamed p50 "
        f"({num(base)} ms), and Continuo's CPU per turn.",
        "",
        "| Loop | Turns | p50 per turn (ms) | Added p50 (ms) | p99 per turn (ms) | Added p99 (ms) | Continuo CPU per "
        "turn (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, label in names.items():
        row = ws.get(key)
        if row:
            lines.append(
                f"| {label} | {row['turns_measured']:,} | {num(row['p50_ms'])} | {row['added_p50_ms']:+.2f} | "
                f"{num(row['p99_ms'])} | {row['added_p99_ms']:+.2f} | {num(row['server_cpu_ms_per_turn'])} |"
            )
    return [*lines, ""]


def mcp_lines(m: dict[str, Any]) -> list[str]:
    lines = [
        f"The latency Continuo adds around one MCP round trip, over the MCP server's own time ({m['n']:,} "
        "sequential requests each): added = mcp - plain - model - direct.",
        "",
        "| Timing | p50 (ms) | p99 (ms) |",
        "|---|---:|---:|",
    ]
    labels = {
        "mcp": "mcp: chained response calling the MCP tool (model, `ping`, model)",
        "plain": "plain: chained response, no tool (one model call)",
        "model": "model: one call straight to the fake upstream",
        "direct": "direct: MCP SDK client, open session + `ping` + close",
    }
    for key, label in labels.items():
        lines.append(f"| {label} | {num(m[key]['p50_ms'])} | {num(m[key]['p99_ms'])} |")
    lines.append(f"| **added** | **{m['added_p50_ms']:+.2f}** | **{m['added_p99_ms']:+.2f}** |")
    return [*lines, ""]


def workers_lines(w: dict[str, Any]) -> list[str]:
    one, two, lock, model = w["one_worker"], w["two_workers"], w["lock_hold"], w["model"]
    core = one.get("pinned_core")
    lines = [
        f"Stored non-streamed requests/s at c={w['concurrency']} with 1 and 2 Continuo workers (fresh SQLite file "
        "each), the scaling, and the errors a client saw (must be 0: no `database is locked`).",
        "",
        "| Workers | Requests | Requests/s | p99 (ms) | Continuo CPU per request (ms) | Errors | Cores |",
        "|---:|---:|---:|---:|---:|---:|---|",
        f"| 1 | {one['n']:,} | {num(one['per_s'])} | {num(one['p99_ms'])} | {num(one['server_cpu_ms_per_req'])} | "
        f"{one['errors']} | {'core ' + str(core) if core is not None else 'any'} |",
        f"| 2 | {two['n']:,} | {num(two['per_s'])} | {num(two['p99_ms'])} | {num(two['server_cpu_ms_per_req'])} | "
        f"{two['errors']} | any (not pinned) |",
        "",
        f"Scaling 2 workers / 1 worker: {num(w['scaling'])}x; errors: {w['errors']}. With 2 workers Continuo is not "
        "pinned: it shares both cores with the load generator and the fake upstream (1 worker has core 0 to "
        "itself), so two cores of its own would likely give more.",
        "",
        f"SQLite's write lock is held {num(lock['mean_ms'], 3)} ms per stored response on average (p50 "
        f"{num(lock['p50_ms'], 3)}, p99 {num(lock['p99_ms'], 3)}; BEGIN IMMEDIATE .. COMMIT around the store's save, "
        f"{lock['samples']:,} uncontended saves in-process; the model below uses the mean).",
    ]
    if model.get("cores_to_cap"):
        lines.append(
            f"Model: one core handles ~{num(model['per_core_req_s'], 0)} stored req/s; the single SQLite writer "
            f"caps at ~{num(model['writer_cap_req_s'], 0)} req/s, so past about {num(model['cores_to_cap'], 0)} "
            "cores use PostgreSQL."
        )
    return [*lines, ""]


def added_lines(doc: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    if doc.get("conversations"):
        lines += conversation_lines(doc["conversations"])
    if doc.get("websocket"):
        lines += websocket_lines(doc["websocket"])
    if doc.get("mcp"):
        lines += mcp_lines(doc["mcp"])
    if doc.get("workers"):
        lines += workers_lines(doc["workers"])
    return lines

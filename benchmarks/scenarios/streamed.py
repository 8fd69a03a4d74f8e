"""Streamed requests (`store: true`): time to the first and the last event, at
concurrency 1 and under load, against the same stream straight from the upstream."""

from __future__ import annotations

from typing import Any

from benchmarks import loadgen
from benchmarks.harness import Bench
from benchmarks.plan import log


async def run(bench: Bench, client: Any) -> None:
    plan = bench.plan
    up = f"{bench.upstream_url}/v1/chat/completions"
    url = f"{bench.continuo_url}/v1/responses"
    direct = bench.chat_body(stream=True)
    body = bench.responses_body(store=True, stream=True)
    out: dict[str, Any] = {"baseline": {}, "continuo": {}}
    for concurrency, n in ((1, plan.stream_c1), (plan.stream_concurrency, plan.stream_cn)):
        key = f"c{concurrency}"
        warm = min(plan.warmup, n)
        await loadgen.streams(client, up, direct, warm, concurrency, b"[DONE]")
        out["baseline"][key] = await bench.measured(
            "upstream",
            loadgen.streams(client, up, direct, n, concurrency, b"[DONE]"),
        )
        await loadgen.streams(client, url, body, warm, concurrency, b"response.completed")
        out["continuo"][key] = await bench.measured(
            "continuo",
            loadgen.streams(client, url, body, n, concurrency, b"response.completed"),
        )
        b, c = out["baseline"][key], out["continuo"][key]
        log(
            f"streamed c={concurrency}: direct first {b['first_p50_ms']:.2f} last {b['last_p50_ms']:.2f} ms "
            f"{b['per_s']}/s | continuo first {c['first_p50_ms']:.2f} last {c['last_p50_ms']:.2f} ms "
            f"{c['per_s']}/s {c['server_cpu_ms_per_req']} ms CPU/stream"
        )
    # One stream, counted: the events Continuo sent for a 32-token answer.
    async with client.post(url, data=body, headers=loadgen.JSON) as response:
        raw = await response.read()
    kinds = [line[7:] for line in raw.split(b"\n") if line.startswith(b"event: ")]
    out["events_per_stream"] = len(kinds)
    out["delta_events_per_stream"] = sum(1 for k in kinds if k == b"response.output_text.delta")
    out["tokens"] = plan.tokens
    out["store"] = True
    bench.results["streamed"] = out

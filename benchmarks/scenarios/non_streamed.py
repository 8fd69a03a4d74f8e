"""Non-streamed requests, `store: true` and `store: false`, at concurrency 1 and under load,
against the same one message sent straight to the upstream."""

from __future__ import annotations

from typing import Any

from benchmarks import loadgen
from benchmarks.harness import Bench
from benchmarks.plan import log


async def run(bench: Bench, client: Any) -> None:
    plan = bench.plan
    up = f"{bench.upstream_url}/v1/chat/completions"
    url = f"{bench.continuo_url}/v1/responses"
    direct = bench.chat_body()
    bodies = {"store_true": bench.responses_body(store=True), "store_false": bench.responses_body(store=False)}
    out: dict[str, dict[str, Any]] = {"baseline": {}, "store_true": {}, "store_false": {}}
    for concurrency in (1, *plan.concurrencies):
        n = plan.c1 if concurrency == 1 else plan.cn
        warm = min(plan.warmup, n)
        key = f"c{concurrency}"
        await loadgen.requests(client, up, direct, warm, concurrency)
        out["baseline"][key] = await bench.measured("upstream", loadgen.requests(client, up, direct, n, concurrency))
        for name, body in bodies.items():
            await loadgen.requests(client, url, body, warm, concurrency)
            size_before = bench.db_size() if name == "store_true" else None
            stats = await bench.measured(
                "continuo",
                loadgen.requests(client, url, body, n, concurrency),
            )
            if size_before is not None and stats["ok"]:
                grown = bench.db_size()["db_bytes"] - size_before["db_bytes"]
                stats["db_bytes_per_stored_response"] = round(grown / stats["ok"], 1)
            out[name][key] = stats
        log(
            f"non-streamed c={concurrency}: direct p50 {out['baseline'][key]['p50_ms']:.2f} ms "
            f"{out['baseline'][key]['per_s']}/s | store:true p50 {out['store_true'][key]['p50_ms']:.2f} ms "
            f"{out['store_true'][key]['per_s']}/s {out['store_true'][key]['server_cpu_ms_per_req']} ms CPU | "
            f"store:false p50 {out['store_false'][key]['p50_ms']:.2f} ms {out['store_false'][key]['per_s']}/s "
            f"{out['store_false'][key]['server_cpu_ms_per_req']} ms CPU"
        )
    bench.results["non_streamed"] = out

"""MCP (issue 15): the added latency of one MCP round trip inside a response, over the MCP
server's own time: ``added = mcp - plain - model - direct`` at p50 and p99 (see
``benchmarks/mcp_round_trip.py``). Runs a Continuo of its own (``allow_private_urls`` on)
in front of ``benchmarks/mcp_fixture.py`` (a tool-calling fake upstream and an MCP server
with one ``ping`` tool, one process on the load generator's core)."""

from __future__ import annotations

import os
from typing import Any

import orjson

from benchmarks import loadgen
from benchmarks.harness import Bench
from benchmarks.plan import ROOT, log
from benchmarks.procs import Child, free_port, python

TOOL_MODEL = "mcp-bench-model"


def _stats(samples: list[float], errors: int = 0) -> dict[str, Any]:
    return {
        "n": len(samples),
        "errors": errors,
        "p50_ms": round(loadgen.percentile(samples, 50) * 1000, 3),
        "p99_ms": round(loadgen.percentile(samples, 99) * 1000, 3),
    }


async def _batch(client: Any, url: str, body: dict[str, Any], n: int, check: bytes) -> dict[str, Any]:
    batch = await loadgen.requests(client, url, orjson.dumps(body), n, 1, lambda payload: check in payload)
    if batch.errors:
        log(f"  mcp: {batch.errors} errors, e.g. {batch.error_samples[:2]}")
    return _stats(batch.latencies, batch.errors)


async def run(bench: Bench, client: Any) -> None:
    n = bench.plan.mcp_n
    up_port, mcp_port = free_port(), free_port()
    fixture = Child(
        "mcp-fixture",
        [python(), "-m", "benchmarks.mcp_fixture", "--upstream-port", str(up_port), "--mcp-port", str(mcp_port)],
        bench.workdir / "mcp-fixture.log",
        bench.cores["loadgen"],
        env={"PYTHONPATH": str(ROOT / "src") + os.pathsep + str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")},
    ).start()
    bench.extras.append(fixture)
    try:
        upstream = f"http://127.0.0.1:{up_port}"
        fixture.wait_healthy(f"{upstream}/health")
        mcp_url = f"http://127.0.0.1:{mcp_port}/mcp"
        config = bench.continuo_config(
            bench.workdir / "mcp.db", upstream, extra="[security]\nallow_private_urls = true\n\n"
        )
        child, base = bench.extra_continuo("continuo-mcp", config)
        try:
            url = f"{base}/v1/responses"
            tool = {"type": "mcp", "server_label": "b", "server_url": mcp_url, "require_approval": "never"}
            # Chains that already hold the server's tool list: later turns do not list again.
            async with client.post(
                url, data=orjson.dumps({"model": TOOL_MODEL, "input": "ping", "tools": [tool]}), headers=loadgen.JSON
            ) as r:
                listed = orjson.loads(await r.read())
            kinds = [item["type"] for item in listed.get("output", [])]
            if kinds != ["mcp_list_tools", "mcp_call", "message"]:
                raise RuntimeError(f"mcp: unexpected first answer {str(listed)[:300]}")
            async with client.post(
                url, data=orjson.dumps({"model": TOOL_MODEL, "input": "hello"}), headers=loadgen.JSON
            ) as r:
                plain_first = orjson.loads(await r.read())
            mcp_body = {"model": TOOL_MODEL, "input": "ping", "tools": [tool], "previous_response_id": listed["id"]}
            plain_body = {"model": TOOL_MODEL, "input": "hello", "previous_response_id": plain_first["id"]}
            chat = {"model": TOOL_MODEL, "messages": [{"role": "user", "content": "ping"}]}
            warm = max(n // 10, 3)
            await _batch(client, url, mcp_body, warm, b'"mcp_call"')
            mcp = await _batch(client, url, mcp_body, n, b'"mcp_call"')
            await _batch(client, url, plain_body, warm, b'"completed"')
            plain = await _batch(client, url, plain_body, n, b'"completed"')
            await _batch(client, f"{upstream}/v1/chat/completions", chat, warm, b'"chat.completion"')
            model = await _batch(client, f"{upstream}/v1/chat/completions", chat, n, b'"chat.completion"')
            # The MCP server's own time as Continuo needs it: open a session, call, close.
            from benchmarks.mcp_round_trip import _direct

            await _direct(mcp_url, warm)
            direct = _stats(await _direct(mcp_url, n))
        finally:
            bench.stop_extra(child)
    finally:
        fixture.stop(grace=10.0)
        bench.extras.remove(fixture)
    out: dict[str, Any] = {"n": n, "direct": direct, "model": model, "plain": plain, "mcp": mcp}
    for q in ("p50", "p99"):
        key = f"{q}_ms"
        out[f"added_{key}"] = round(mcp[key] - plain[key] - model[key] - direct[key], 3)
    log(
        f"mcp: mcp {mcp['p50_ms']:.2f} plain {plain['p50_ms']:.2f} model {model['p50_ms']:.2f} "
        f"direct {direct['p50_ms']:.2f} ms p50 -> added {out['added_p50_ms']:.2f} ms"
    )
    bench.results["mcp"] = out

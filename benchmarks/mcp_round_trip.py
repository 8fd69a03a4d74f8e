"""The added latency of one MCP round trip inside a response, over the MCP server's own time.

    .venv/bin/python -m benchmarks.mcp_round_trip [--n 200]

Everything runs in this process, each server in a thread of its own on 127.0.0.1: a fake
Chat Completions upstream (it asks for ``mcp__b__ping`` when the conversation has no tool
result yet, else answers in words), an MCP server made with the ``mcp`` SDK with one
``ping`` tool, and Continuo (``allow_private_urls`` on, SQLite in a temporary folder).
Three timings, each the median (and p99) of ``n`` sequential requests:

* ``direct``: the MCP server's own time as Continuo needs it: open a session with the SDK
  client, call ``ping``, close;
* ``model``: one call straight to the fake upstream (what a second model call costs);
* ``plain``: a chained Continuo response with no tool (one model call);
* ``mcp``: a chained Continuo response with the MCP tool whose list is already in the
  chain (model call, ``ping``, model call).

Reported row: ``added = mcp - plain - model - direct``: what Continuo adds around one MCP
round trip, over the server's own time. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn
from mcp import Client
from mcp.server.mcpserver import MCPServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from continuo.api.app import create_app
from continuo.config import parse_config


def _serve(app: Any) -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


async def _chat(request: Request) -> Response:
    body = orjson.loads(await request.body())
    messages = body["messages"]
    offered = {t["function"]["name"] for t in body.get("tools", [])}
    message: dict[str, Any] = {"role": "assistant", "content": "pong received"}
    finish = "stop"
    if "mcp__b__ping" in offered and messages[-1]["role"] != "tool":
        call = {"id": "call_1", "type": "function", "function": {"name": "mcp__b__ping", "arguments": "{}"}}
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
        finish = "tool_calls"
    answer = {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 0,
        "model": body["model"],
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
    }
    return Response(orjson.dumps(answer), media_type="application/json")


def _mcp_app() -> Any:
    server = MCPServer("bench")

    @server.tool()
    def ping() -> str:
        """Answers pong."""
        return "pong"

    return server.streamable_http_app()


def _stats(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    return {
        "p50_ms": round(statistics.median(samples) * 1000, 3),
        "p99_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1000, 3),
    }


async def _direct(url: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        async with Client(url, cache=None) as client:
            await client.call_tool("ping", {})
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    n = parser.parse_args().n
    upstream = _serve(Starlette(routes=[Route("/v1/chat/completions", _chat, methods=["POST"])]))
    mcp_url = _serve(_mcp_app()) + "/mcp"
    folder = Path(tempfile.mkdtemp())
    config = parse_config(
        {
            "database": {"url": f"sqlite:///{folder / 'continuo.db'}"},
            "security": {"allow_private_urls": True},
            "providers": [{"name": "up", "type": "chat_completions", "base_url": f"{upstream}/v1"}],
            "models": [{"name": "*", "provider": "up"}],
        }
    )
    continuo = _serve(create_app(config))
    tool = {"type": "mcp", "server_label": "b", "server_url": mcp_url, "require_approval": "never"}
    with httpx.Client(base_url=f"{continuo}/v1", timeout=30) as http:

        def create(**body: Any) -> dict[str, Any]:
            answer = http.post("/responses", json={"model": "m", **body})
            answer.raise_for_status()
            result: dict[str, Any] = answer.json()
            return result

        # A chain that already holds the server's tool list: later turns do not list again.
        listed = create(input="ping", tools=[tool])
        assert [i["type"] for i in listed["output"]] == ["mcp_list_tools", "mcp_call", "message"]
        plain_first = create(input="hello")

        def timed(body: dict[str, Any]) -> list[float]:
            out = []
            for _ in range(n):
                start = time.perf_counter()
                create(**body)
                out.append(time.perf_counter() - start)
            return out

        mcp_times = timed({"input": "ping", "tools": [tool], "previous_response_id": listed["id"]})
        plain_times = timed({"input": "hello", "previous_response_id": plain_first["id"]})
        model_times = []
        chat = {"model": "m", "messages": [{"role": "user", "content": "ping"}]}
        for _ in range(n):
            start = time.perf_counter()
            httpx.post(f"{upstream}/v1/chat/completions", json=chat).raise_for_status()
            model_times.append(time.perf_counter() - start)
    direct_times = asyncio.run(_direct(mcp_url, n))
    result: dict[str, Any] = {
        "n": n,
        "direct": _stats(direct_times),
        "model": _stats(model_times),
        "plain": _stats(plain_times),
        "mcp": _stats(mcp_times),
    }
    p50 = {name: result[name]["p50_ms"] for name in ("direct", "model", "plain", "mcp")}
    result["added_p50_ms"] = round(p50["mcp"] - p50["plain"] - p50["model"] - p50["direct"], 3)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

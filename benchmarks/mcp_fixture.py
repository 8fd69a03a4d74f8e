"""The MCP scenario's other servers, in a process of their own: a Chat Completions
upstream that asks for ``mcp__b__ping`` until the conversation holds a tool result, and an
MCP server (the ``mcp`` SDK, streamable HTTP) with one ``ping`` tool. Both on 127.0.0.1;
the upstream also answers ``GET /health``. See ``benchmarks/mcp_round_trip.py``.

    .venv/bin/python -m benchmarks.mcp_fixture --upstream-port A --mcp-port B
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from benchmarks.mcp_round_trip import _chat, _mcp_app


async def _health(_request: Request) -> Response:
    return Response(b"ok")


def _server(app: Any, port: int) -> uvicorn.Server:
    return uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="fake tool-calling upstream and MCP server for the benchmark")
    parser.add_argument("--upstream-port", type=int, required=True)
    parser.add_argument("--mcp-port", type=int, required=True)
    args = parser.parse_args(argv)
    upstream = Starlette(
        routes=[
            Route("/v1/chat/completions", _chat, methods=["POST"]),
            Route("/health", _health, methods=["GET"]),
        ]
    )
    mcp = _server(_mcp_app(), args.mcp_port)
    threading.Thread(target=mcp.run, daemon=True).start()
    while not mcp.started:
        time.sleep(0.01)
    _server(upstream, args.upstream_port).run()  # until SIGTERM
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

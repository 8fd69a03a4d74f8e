"""MCP servers for the tests: one of our own made with the ``mcp`` SDK (errors, slow
calls, headers), and the reference ``server-everything`` from npm.

Our server records the HTTP requests it receives (method and headers), so tests can see
what Continuo sent, and a blocking tool signals when it starts and waits until released.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.support.servers import ServerThread

ROOT = Path(__file__).resolve().parents[2]
EVERYTHING = ROOT / ".mcp-servers" / "node_modules" / ".bin" / "mcp-server-everything"


class Recorder:
    """ASGI middleware that keeps each request's method and headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.requests: list[tuple[str, dict[str, str]]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            self.requests.append((scope["method"], headers))
        await self.app(scope, receive, send)


class ToolState:
    """State the tools share with the tests (the server runs in another thread)."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.cancelled = threading.Event()
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def reset(self) -> None:
        self.release.set()  # frees a call left waiting by an earlier test
        self.started = threading.Event()
        self.release = threading.Event()
        self.cancelled = threading.Event()
        self.calls.clear()


def make_server(state: ToolState) -> MCPServer:
    server = MCPServer("continuo-test")

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True))
    def echo(text: str) -> str:
        """Repeat the text."""
        state.calls.append(("echo", {"text": text}))
        return f"echo: {text}"

    @server.tool()
    def add(a: int, b: int) -> str:
        """Add two integers."""
        state.calls.append(("add", {"a": a, "b": b}))
        return str(a + b)

    @server.tool()
    def explode() -> str:
        """Always fails."""
        state.calls.append(("explode", {}))
        raise ToolError("the tool exploded")

    @server.tool()
    def big(size: int) -> str:
        """A long output."""
        return "x" * size

    @server.tool()
    async def block() -> str:
        """Waits until the test releases it."""
        state.calls.append(("block", {}))
        state.started.set()
        try:
            await anyio.to_thread.run_sync(state.release.wait, abandon_on_cancel=True)
        except BaseException:
            state.cancelled.set()
            raise
        return "released"

    return server


class OwnMCPServer:
    def __init__(self) -> None:
        self.state = ToolState()
        self.mcp = make_server(self.state)
        self.recorder = Recorder(self.mcp.streamable_http_app())
        self.thread = ServerThread(self.recorder).start()
        self.url = f"{self.thread.url}/mcp"

    def stop(self) -> None:
        self.thread.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def everything_server(transport: str = "streamableHttp") -> Iterator[str | None]:
    """``server-everything`` over Streamable HTTP (or ``sse``); None when it is not
    installed (and cannot be, without npm)."""
    if not EVERYTHING.exists() and shutil.which("npm"):
        subprocess.run([str(ROOT / "scripts" / "install-mcp-everything.sh")], check=True)
    if not EVERYTHING.exists():
        yield None
        return
    port = _free_port()
    process = subprocess.Popen(
        [str(EVERYTHING), transport],
        env={**os.environ, "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/{'sse' if transport == 'sse' else 'mcp'}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("server-everything did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)

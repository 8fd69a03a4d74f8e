"""MCP servers, reached with the official ``mcp`` SDK's client.

One ``MCPSessions`` per response: a server's session is opened the first time the
response needs it (to list its tools or to call one) and every session is closed when
the response ends, however it ends (a cancelled background run included). Sessions are
opened and closed in the run's own task, as the SDK's task groups require; calls on an
open session may run in other tasks, which is how parallel calls run.

Transports: Streamable HTTP (the default for a URL), SSE (a URL whose path ends in
``/sse``, or ``transport = "sse"`` in the config) and stdio (servers the config starts by
command). A request's ``server_url`` goes through the remote-content address guard and
the optional ``[mcp] allowed_servers`` list. Header values (the request's ``headers`` and
``authorization``) are sent and never logged: errors name the server by its label.
"""

from __future__ import annotations

import asyncio
import logging
import os
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from continuo.config import MCPConfig, MCPServerConfig
from continuo.core.fetch import Fetcher
from continuo.errors import APIError, InvalidRequest

if TYPE_CHECKING:  # the SDK is imported when a response first uses MCP (it is slow to import)
    from mcp import Client

log = logging.getLogger("continuo")


SECRET_REF = "continuo_mcp_secrets"


class MCPFailure(Exception):
    """A server could not be reached or answered with an error. ``error`` is the
    ``mcp_call.error`` object (``http_error`` or ``mcp_protocol_error``)."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error["message"])
        self.error = error


@dataclass(slots=True)
class Endpoint:
    """Where a server is and how to talk to it (headers are secrets: never logged)."""

    label: str
    url: str | None = None
    transport: str = "streamable_http"
    headers: dict[str, str] = field(default_factory=dict)
    # A stdio server: (command, args, env).
    stdio: tuple[str, list[str], dict[str, str] | None] | None = None


def external_error(label: str, message: str) -> APIError:
    """The error a response fails with when a server's tools cannot be listed (OpenAI
    answers 424 with this type)."""
    return APIError(
        f"Error retrieving tool list from MCP server: '{label}'. {message}",
        status=424,
        type="external_connector_error",
        param="tools",
        code="http_error",
    )


class MCPClients:
    """The server's MCP settings: configured servers, the address guard, timeouts."""

    def __init__(self, config: MCPConfig, servers: list[MCPServerConfig], fetcher: Fetcher | None) -> None:
        self.config = config
        self.servers = {server.label: server for server in servers}
        self.fetcher = fetcher
        # Secrets of queued background runs, by reference, kept in memory only.
        self.secrets: dict[str, dict[str, dict[str, str]]] = {}

    def fill(self, tools: list[dict[str, Any]]) -> None:
        """A configured server used by label alone takes the config's description,
        ``require_approval`` and ``allowed_tools`` where the request gives none."""
        for tool in tools:
            if tool.get("type") != "mcp" or tool.get("server_url") is not None:
                continue
            server = self.servers.get(str(tool.get("server_label")))
            if server is None:
                continue
            for key, value in (
                ("server_description", server.description),
                ("require_approval", server.require_approval),
                ("allowed_tools", server.allowed_tools),
            ):
                if tool.get(key) is None and value is not None:
                    tool[key] = value

    def hold(self, body: dict[str, Any], secrets: dict[str, dict[str, str]]) -> dict[str, Any]:
        """A queued body with its MCP secrets redacted; they wait here, in memory, for the
        run (a run claimed by another replica goes without them)."""
        from continuo.core.toolset import redact_tools
        from continuo.ids import new_id

        ref = new_id("mcpsec")
        self.secrets[ref] = secrets
        tools = [dict(tool) for tool in body.get("tools") or [] if isinstance(tool, dict)]
        redact_tools(tools)
        return {**body, "tools": tools, SECRET_REF: ref}

    def take(self, body: dict[str, Any]) -> dict[str, dict[str, str]] | None:
        ref = body.get(SECRET_REF)
        return self.secrets.pop(ref, None) if isinstance(ref, str) else None

    async def endpoint(self, tool: dict[str, Any], headers: dict[str, str], where: str) -> Endpoint:
        label = str(tool.get("server_label"))
        url = tool.get("server_url")
        configured = self.servers.get(label)
        if url is None:
            if configured is None:
                raise InvalidRequest(
                    f"MCP server '{label}' has no server_url and is not configured on this server.",
                    param=f"{where}.server_url",
                    code="invalid_value",
                )
            return _configured_endpoint(configured)
        if not isinstance(url, str):
            raise InvalidRequest(f"Invalid '{where}.server_url': expected a string.", param=f"{where}.server_url")
        allow = self.config.allowed_servers
        if allow and not any(url.startswith(prefix) for prefix in allow):
            raise InvalidRequest(
                f"MCP server '{label}': its server_url is not among the servers this server allows.",
                param=f"{where}.server_url",
                code="url_not_allowed",
            )
        if self.fetcher is not None:
            await self.fetcher.check_url(url, f"{where}.server_url")
        path = urlsplit(url).path.rstrip("/")
        transport = "sse" if path.endswith("/sse") else "streamable_http"
        return Endpoint(label, url, transport, headers)

    def session_set(self) -> MCPSessions:
        return MCPSessions(self.config)


def _configured_endpoint(server: MCPServerConfig) -> Endpoint:
    headers = {name: os.environ.get(var, "") for name, var in server.headers_env.items()}
    if server.command is not None:
        env = {**os.environ, **server.env} if server.env else None
        return Endpoint(server.label, transport="stdio", stdio=(server.command, list(server.args), env))
    transport = server.transport or "streamable_http"
    return Endpoint(server.label, server.url, transport, headers)


class MCPSessions:
    """The sessions of one response."""

    def __init__(self, config: MCPConfig) -> None:
        self.config = config
        self.stack = AsyncExitStack()
        self.clients: dict[str, Client] = {}

    async def client(self, endpoint: Endpoint) -> Client:
        """The open session to a server (opened now if need be, in the caller's task)."""
        client = self.clients.get(endpoint.label)
        if client is not None:
            return client
        await _load_sdk()
        try:
            async with asyncio.timeout(self.config.list_timeout):
                client = await self.stack.enter_async_context(self._connect(endpoint))
        except Exception as exc:
            raise MCPFailure(describe(exc, endpoint.label)) from None
        self.clients[endpoint.label] = client
        return client

    def _connect(self, endpoint: Endpoint) -> Client:
        import httpx2
        from mcp import Client
        from mcp.client.sse import sse_client
        from mcp.client.stdio import StdioServerParameters
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        read = self.config.call_timeout
        if endpoint.transport == "stdio" and endpoint.stdio is not None:
            command, args, env = endpoint.stdio
            params = StdioServerParameters(command=command, args=args, env=env)
            return Client(params, read_timeout_seconds=read, cache=None)
        assert endpoint.url is not None
        timeout = httpx2.Timeout(self.config.list_timeout, read=read)
        if endpoint.transport == "sse":
            transport: Any = sse_client(endpoint.url, headers=endpoint.headers, timeout=self.config.list_timeout)
        else:
            http = create_mcp_http_client(headers=endpoint.headers, timeout=timeout)
            self.stack.push_async_callback(http.aclose)
            transport = streamable_http_client(endpoint.url, http_client=http)
        return Client(transport, read_timeout_seconds=read, cache=None)

    async def list_tools(self, endpoint: Endpoint) -> list[dict[str, Any]]:
        client = await self.client(endpoint)
        tools: list[dict[str, Any]] = []
        try:
            async with asyncio.timeout(self.config.list_timeout):
                cursor: str | None = None
                while True:
                    page = await client.list_tools(cursor=cursor)
                    tools.extend(_tool(tool) for tool in page.tools)
                    cursor = page.next_cursor
                    if not cursor:
                        break
        except Exception as exc:
            raise MCPFailure(describe(exc, endpoint.label)) from None
        return tools

    async def call(self, client: Client, label: str, name: str, arguments: dict[str, Any]) -> str:
        """Run one call and return its output for the model; raise ``MCPFailure``."""
        try:
            async with asyncio.timeout(self.config.call_timeout):
                result = await client.call_tool(name, arguments)
        except Exception as exc:
            raise MCPFailure(describe(exc, label)) from None
        content = [block.model_dump(by_alias=True, exclude_none=True, mode="json") for block in result.content]
        if result.is_error:
            raise MCPFailure(
                {"type": "mcp_tool_execution_error", "content": content, "message": _text(content, None)[:2000]}
            )
        return self.cap(_text(content, result.structured_content))

    def cap(self, text: str) -> str:
        limit = self.config.max_output_chars
        if len(text) <= limit:
            return text
        return text[:limit] + f"\n[output cut: {len(text) - limit} more characters]"

    async def aclose(self) -> None:
        """Close every session (in the task that opened them)."""
        try:
            await self.stack.aclose()
        except Exception:
            log.warning("closing MCP sessions failed", exc_info=True)
        self.clients.clear()


_sdk_loaded = False


async def _load_sdk() -> None:
    """Import the SDK in a worker thread the first time (about a second of CPU that would
    otherwise stall the event loop)."""
    global _sdk_loaded
    if not _sdk_loaded:
        await asyncio.to_thread(lambda: [__import__(m) for m in ("mcp.client.client", "mcp.client.sse", "httpx2")])
        _sdk_loaded = True


def _tool(tool: Any) -> dict[str, Any]:
    annotations = tool.annotations.model_dump(by_alias=True, exclude_none=True) if tool.annotations else None
    out: dict[str, Any] = {"name": tool.name, "input_schema": tool.input_schema, "annotations": annotations}
    if tool.description:
        out["description"] = tool.description
    return out


def _text(content: list[dict[str, Any]], structured: Any) -> str:
    import orjson

    if content and all(block.get("type") == "text" for block in content):
        return "\n".join(str(block.get("text", "")) for block in content)
    if not content and structured is not None:
        return orjson.dumps(structured).decode()
    return orjson.dumps(content).decode()


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def describe(exc: BaseException, label: str) -> dict[str, Any]:
    """An ``mcp_call.error`` object for a failure, naming the server by label only."""
    import httpx2
    from mcp.shared.exceptions import MCPError

    leaf = _leaf(exc)
    if isinstance(leaf, MCPFailure):
        return leaf.error
    if isinstance(leaf, MCPError):
        return {"type": "mcp_protocol_error", "code": leaf.code, "message": leaf.message}
    if isinstance(leaf, httpx2.HTTPStatusError):
        status = leaf.response.status_code
        return {"type": "http_error", "code": status, "message": f"MCP server '{label}' answered HTTP {status}."}
    if isinstance(leaf, TimeoutError):
        return {"type": "http_error", "code": 504, "message": f"MCP server '{label}' did not answer in time."}
    if isinstance(leaf, (httpx2.TransportError, OSError)):
        return {"type": "http_error", "code": 502, "message": f"MCP server '{label}' could not be reached."}
    message = f"MCP server '{label}' failed: {type(leaf).__name__}."
    return {"type": "mcp_protocol_error", "code": -32603, "message": message}

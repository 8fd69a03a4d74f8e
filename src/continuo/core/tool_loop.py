"""The server-side tool loop of one response, driven by the run driver.

Before the first model call: list the tools of each MCP server the context has no list
for (one ``mcp_list_tools`` item each), and run the calls the client has just approved
(``mcp_approval_response`` items in this request's input). After each model call: run
the MCP calls it asked for, in parallel, and say whether to call the model again. The
loop stops when the model answers without an MCP call, calls a client-side tool, asks for
an approval, or the round limit is reached; ``max_tool_calls`` stops offering MCP tools
once that many calls have run.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import orjson

from continuo.backends.base import Usage
from continuo.core.mcp import Endpoint, MCPClients, MCPFailure, MCPSessions, external_error
from continuo.core.toolset import ToolSet, allowed

if TYPE_CHECKING:
    from continuo.core.builder import ResponseBuilder, _OpenItem
    from continuo.core.driver import Job, Sink

MAX_TOOL_CALLS = "This call was not run: the response reached its max_tool_calls."


async def resolve(clients: MCPClients, tools: ToolSet) -> dict[str, Endpoint]:
    """Each server's endpoint (the address guard and allow-list apply here)."""
    endpoints = {}
    index = {id(tool): i for i, tool in enumerate(tools.tools)}
    for label, server in tools.servers.items():
        where = f"tools[{index.get(id(server.tool), 0)}]"
        endpoints[label] = await clients.endpoint(server.tool, server.headers, where)
    return endpoints


class ToolLoop:
    def __init__(self, clients: MCPClients, job: Job, sink: Sink) -> None:
        self.clients = clients
        self.job = job
        self.sink = sink
        self.tools: ToolSet = job.tools  # type: ignore[assignment]
        self.builder: ResponseBuilder = job.builder
        self.sessions: MCPSessions = clients.session_set()
        self.endpoints: dict[str, Endpoint] = {}
        self.rounds = 0
        self.calls = 0
        self.limit = job.request.max_tool_calls
        self.tools.budget = self.limit
        self.usage: Usage | None = None

    async def _emit(self) -> None:
        if self.builder.events:
            await self.sink.emit(self.builder.drain())

    async def prepare(self) -> None:
        if self.tools.servers:
            self.endpoints = await resolve(self.clients, self.tools)
        for server in self.tools.unlisted():
            opened = self.builder.mcp_list_started(server.label)
            await self._emit()
            try:
                listed = await self.sessions.list_tools(self.endpoints[server.label])
            except MCPFailure as exc:
                self.builder.mcp_list_done(opened, None, exc.error["message"])
                await self._emit()
                raise external_error(server.label, exc.error["message"]) from None
            listed = [t for t in listed if allowed(server.tool, t)]
            self.builder.mcp_list_done(opened, listed, None)
            self.tools.listed[server.label] = listed
            await self._emit()
        await self._approved()

    async def _approved(self) -> None:
        """Run the calls this request's ``mcp_approval_response`` items approve."""
        requests = {item.get("id"): item for item in self.job.context if item.get("type") == "mcp_approval_request"}
        done = {item.get("approval_request_id") for item in self.job.context if item.get("type") == "mcp_call"}
        calls = []
        for answer in self.job.request.input:
            if answer.get("type") != "mcp_approval_response" or not answer.get("approve"):
                continue
            request_id = answer.get("approval_request_id")
            asked = requests.get(request_id)
            if asked is None or request_id in done or asked.get("server_label") not in self.tools.servers:
                continue
            done.add(request_id)
            calls.append(
                self.builder.mcp_call_opened(asked["server_label"], asked["name"], asked["arguments"], str(request_id))
            )
        if calls:
            await self._emit()
            await self._run(calls)

    def account(self) -> None:
        """Add up the usage of every model call of the response."""
        current = self.builder.usage
        if current is None or current is self.usage:
            return
        if self.usage is None:
            self.usage = Usage(**{k: getattr(current, k) for k in Usage.__slots__})
        else:
            for name in Usage.__slots__:
                setattr(self.usage, name, getattr(self.usage, name) + getattr(current, name))
        self.builder.usage = self.usage

    async def after_call(self) -> bool:
        """The model call ended: run its MCP calls; whether to call the model again."""
        builder = self.builder
        self.account()
        if builder.finish_reason in ("length", "content_filter"):
            return False  # complete() settles it as incomplete, calls included
        client_calls = builder.client_calls
        builder.end_model_call()
        pending = builder.take_pending_mcp()
        if pending:
            await self._emit()
            await self._run(pending)
        self.rounds += 1
        self.tools.rounds = self.rounds
        stop = builder.approvals_made > 0 or builder.client_calls > client_calls
        if stop or not pending or self.rounds >= self.clients.config.max_rounds:
            return False
        builder.finish_reason = None
        return True

    async def _run(self, calls: list[_OpenItem]) -> None:
        limit = self.limit
        runnable = calls if limit is None else calls[: max(limit - self.calls, 0)]
        for call in calls[len(runnable) :]:
            self.builder.mcp_call_done(
                call, None, {"type": "mcp_tool_execution_error", "content": [], "message": MAX_TOOL_CALLS}
            )
        self.calls += len(runnable)
        if limit is not None:
            self.tools.budget = max(limit - self.calls, 0)
        # Sessions open in this task (the SDK's task groups need it); calls may run apart.
        clients: dict[str, Any] = {}
        for call in runnable:
            label = call.item["server_label"]
            if label not in clients:
                try:
                    clients[label] = await self.sessions.client(self.endpoints[label])
                except MCPFailure as exc:
                    clients[label] = exc
        tasks: list[asyncio.Task[tuple[_OpenItem, str | None, dict[str, Any] | None]]] = []
        for call in runnable:
            self.builder.mcp_call_running(call)
            client = clients[call.item["server_label"]]
            if isinstance(client, MCPFailure):
                self.builder.mcp_call_done(call, None, client.error)
                continue
            tasks.append(asyncio.ensure_future(self._call(client, call)))
        await self._emit()
        try:
            for done in asyncio.as_completed(tasks):
                call, output, error = await done
                self.builder.mcp_call_done(call, output, error)
                await self._emit()
        finally:
            for task in tasks:
                task.cancel()

    async def _call(self, client: Any, call: _OpenItem) -> tuple[_OpenItem, str | None, dict[str, Any] | None]:
        item = call.item
        try:
            arguments = orjson.loads(item["arguments"] or "{}")
        except orjson.JSONDecodeError:
            arguments = None
        if not isinstance(arguments, dict):
            message = "The arguments must be a JSON object."
            return call, None, {"type": "mcp_protocol_error", "code": -32602, "message": message}
        try:
            return call, await self.sessions.call(client, item["server_label"], item["name"], arguments), None
        except MCPFailure as exc:
            return call, None, exc.error

    async def aclose(self) -> None:
        await self.sessions.aclose()

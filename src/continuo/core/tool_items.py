"""The builder's server-side tool items: ``mcp_list_tools``, ``mcp_call``,
``mcp_approval_request`` and ``custom_tool_call``, with their stream events.

A mixin of ``ResponseBuilder`` (kept apart so the builder stays one readable state
machine): the builder opens a call item through ``_tool_item`` when the model calls a
function that a ``ToolRef`` names, and the run driver's tool loop reports listings and
call results here, so output items and events are still made in one place.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

import orjson

from continuo.core.toolset import ToolRef
from continuo.ids import new_id

if TYPE_CHECKING:
    from continuo.core.builder import _OpenItem


class ToolEvent(StrEnum):
    MCP_LIST_IN_PROGRESS = "response.mcp_list_tools.in_progress"
    MCP_LIST_COMPLETED = "response.mcp_list_tools.completed"
    MCP_LIST_FAILED = "response.mcp_list_tools.failed"
    MCP_CALL_IN_PROGRESS = "response.mcp_call.in_progress"
    MCP_CALL_COMPLETED = "response.mcp_call.completed"
    MCP_CALL_FAILED = "response.mcp_call.failed"
    MCP_ARGUMENTS_DELTA = "response.mcp_call_arguments.delta"
    MCP_ARGUMENTS_DONE = "response.mcp_call_arguments.done"
    CUSTOM_INPUT_DELTA = "response.custom_tool_call_input.delta"
    CUSTOM_INPUT_DONE = "response.custom_tool_call_input.done"


_ITEM_DONE = "response.output_item.done"


class ToolItems:
    """Methods ``ResponseBuilder`` gains for server-side tools."""

    # Provided by ResponseBuilder.
    response: dict[str, Any]
    items_done: int
    _calls: dict[int, _OpenItem]

    if TYPE_CHECKING:

        def _event(self, kind: str, payload: dict[str, Any]) -> None: ...
        def _open(self, item: dict[str, Any]) -> _OpenItem: ...
        def _close_current(self, status: str = "completed") -> None: ...

    def _tools_init(self) -> None:
        # Function names the model may call that stand for server-side tools.
        self.tool_refs: dict[str, ToolRef] = {}
        # MCP calls whose arguments are complete, waiting to run (or for approval).
        self.pending_mcp: list[_OpenItem] = []
        # Every MCP call item not settled yet (pending or running), by item id.
        self.unsettled: dict[str, _OpenItem] = {}
        self.approvals_made = 0
        self.client_calls = 0

    # -- items the model opens -----------------------------------------------------------

    def _tool_item(self, ref: ToolRef, call_id: str | None) -> dict[str, Any]:
        if ref.kind == "custom":
            return {
                "id": new_id("ctc"),
                "type": "custom_tool_call",
                "status": "in_progress",
                "call_id": call_id or new_id("call"),
                "name": ref.name,
                "input": "",
            }
        if ref.approval:
            return {
                "id": new_id("mcpr"),
                "type": "mcp_approval_request",
                "server_label": ref.server_label,
                "name": ref.name,
                "arguments": "",
            }
        return _mcp_call(ref.server_label, ref.name)

    def _tool_arguments(self, call: _OpenItem, fragment: str) -> None:
        if call.item["type"] == "mcp_call":
            self._event(
                ToolEvent.MCP_ARGUMENTS_DELTA,
                {"item_id": call.item["id"], "output_index": call.index, "delta": fragment},
            )

    def _close_tool_call(self, call: _OpenItem, status: str) -> None:
        """The model finished a server-side tool call (``status`` is how the model call ended)."""
        item = call.item
        joined = "".join(call.chunks)
        kind = item["type"]
        if kind == "custom_tool_call":
            item["input"] = _custom_input(joined)
            item["status"] = status
            payload = {"item_id": item["id"], "output_index": call.index}
            if item["input"]:
                self._event(ToolEvent.CUSTOM_INPUT_DELTA, {**payload, "delta": item["input"]})
            self._event(ToolEvent.CUSTOM_INPUT_DONE, {**payload, "input": item["input"]})
            self._item_done(call)
            self.client_calls += 1
        elif kind == "mcp_approval_request":
            item["arguments"] = joined or "{}"
            self._item_done(call)
            self.approvals_made += 1
        else:
            item["arguments"] = joined or "{}"
            if not joined:  # the done event always equals its joined deltas
                self._tool_arguments(call, item["arguments"])
            self._event(
                ToolEvent.MCP_ARGUMENTS_DONE,
                {"item_id": item["id"], "output_index": call.index, "arguments": item["arguments"]},
            )
            if status == "completed":
                self.pending_mcp.append(call)
                self.unsettled[item["id"]] = call
            else:
                self._settle_call(call, "incomplete", None, None)

    def _item_done(self, opened: _OpenItem) -> None:
        self._event(_ITEM_DONE, {"output_index": opened.index, "item": opened.item})
        self.items_done += 1

    def _close_tool_items(self, status: str) -> None:
        """The response ends: calls that never ran are settled as not completed."""
        self.pending_mcp = []
        for call in list(self.unsettled.values()):
            self._settle_call(call, "incomplete", None, None)

    # -- what the tool loop reports ------------------------------------------------------

    def take_pending_mcp(self) -> list[_OpenItem]:
        pending, self.pending_mcp = self.pending_mcp, []
        return pending

    def mcp_list_started(self, label: str) -> _OpenItem:
        self._close_current()
        opened = self._open({"id": new_id("mcpl"), "type": "mcp_list_tools", "server_label": label, "tools": []})
        self._event(ToolEvent.MCP_LIST_IN_PROGRESS, {"item_id": opened.item["id"], "output_index": opened.index})
        return opened

    def mcp_list_done(self, opened: _OpenItem, tools: list[dict[str, Any]] | None, error: str | None) -> None:
        item = opened.item
        item["tools"] = tools or []
        kind = ToolEvent.MCP_LIST_COMPLETED
        if error is not None:
            item["error"] = error
            kind = ToolEvent.MCP_LIST_FAILED
        self._event(kind, {"item_id": item["id"], "output_index": opened.index})
        self._item_done(opened)

    def mcp_call_opened(self, label: str, name: str, arguments: str, approval_request_id: str) -> _OpenItem:
        """An approved call, run before the model speaks: opened with its arguments."""
        self._close_current()
        opened = self._open(_mcp_call(label, name))
        item = opened.item
        self.unsettled[item["id"]] = opened
        item["approval_request_id"] = approval_request_id
        where = {"item_id": item["id"], "output_index": opened.index}
        self._event(ToolEvent.MCP_ARGUMENTS_DELTA, {**where, "delta": arguments})
        item["arguments"] = arguments
        self._event(ToolEvent.MCP_ARGUMENTS_DONE, {**where, "arguments": arguments})
        return opened

    def mcp_call_running(self, call: _OpenItem) -> None:
        self._event(ToolEvent.MCP_CALL_IN_PROGRESS, {"item_id": call.item["id"], "output_index": call.index})

    def mcp_call_done(self, call: _OpenItem, output: str | None, error: dict[str, Any] | None) -> None:
        self._settle_call(call, "failed" if error is not None else "completed", output, error)

    def _settle_call(self, call: _OpenItem, status: str, output: str | None, error: dict[str, Any] | None) -> None:
        item = call.item
        self.unsettled.pop(item["id"], None)
        item["status"] = status
        item["output"] = output
        item["error"] = error
        if status == "completed":
            self._event(ToolEvent.MCP_CALL_COMPLETED, {"item_id": item["id"], "output_index": call.index})
        elif status == "failed":
            self._event(ToolEvent.MCP_CALL_FAILED, {"item_id": item["id"], "output_index": call.index})
        self._item_done(call)


def _mcp_call(label: str, name: str) -> dict[str, Any]:
    return {
        "id": new_id("mcp"),
        "type": "mcp_call",
        "status": "in_progress",
        "server_label": label,
        "name": name,
        "arguments": "",
        "output": None,
        "error": None,
        "approval_request_id": None,
    }


def _custom_input(arguments: str) -> str:
    """A custom tool's input, from the one-string-argument function the model called
    (a model that sent the text bare, not as JSON, is taken at its word)."""
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return arguments
    if isinstance(value, dict) and isinstance(value.get("input"), str):
        return str(value["input"])
    return arguments if not isinstance(value, str) else value

"""The event state machine: backend deltas in, Responses output items and events out.

This is the only place that builds output items and stream events, for every backend.
An event is ``(type, json_bytes)``: encoded once, when it happens, so the HTTP layer only
frames it and later readers (replay) get exactly the same bytes.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from continuo.backends.base import Delta, Finish, ReasoningDelta, TextDelta, ToolCallDelta, Usage
from continuo.core.request import CreateRequest
from continuo.core.status import RESPONSE_ERROR_CODES, EventType, Status, terminal_event
from continuo.core.tool_items import ToolItems
from continuo.ids import new_id

Event = tuple[str, bytes]

# The event types of a token, as module names: an enum member looked up on its class is a
# descriptor call in Python 3.11, about ten times the cost of a global.
_TEXT_DELTA = EventType.OUTPUT_TEXT_DELTA
_REASONING_DELTA = EventType.REASONING_TEXT_DELTA
_ARGUMENTS_DELTA = EventType.FUNCTION_CALL_ARGUMENTS_DELTA


def new_response(request: CreateRequest, response_id: str, created_at: int) -> dict[str, Any]:
    """The Response object as it stands before the model says anything.

    Every field of OpenAI's ``Response`` and Open Responses' ``ResponseResource``, typed as
    both specs say: sampling values the client left out are echoed as the defaults the
    model ran with (Open Responses requires numbers there, never null), and ``user``, a
    string in OpenAI's schema that is not nullable, is left out unless it was sent.
    """
    response = {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": Status.IN_PROGRESS,
        "background": request.background,
        "completed_at": None,
        "conversation": None if request.conversation is None else {"id": request.conversation},
        "error": None,
        "incomplete_details": None,
        "instructions": request.instructions,
        "max_output_tokens": request.max_output_tokens,
        "max_tool_calls": request.max_tool_calls,
        "metadata": request.metadata,
        "model": request.model,
        "output": [],
        "parallel_tool_calls": request.parallel_tool_calls,
        "previous_response_id": request.previous_response_id,
        "prompt": None,
        "prompt_cache_key": request.prompt_cache_key,
        "reasoning": request.reasoning,
        "safety_identifier": request.safety_identifier,
        "service_tier": request.service_tier or "default",
        "store": request.store,
        "temperature": 1.0 if request.temperature is None else request.temperature,
        "text": _echo_text(request.text),
        "tool_choice": request.tool_choice,
        "tools": request.tools,
        "top_logprobs": request.top_logprobs or 0,
        "top_p": 1.0 if request.top_p is None else request.top_p,
        "truncation": request.truncation,
        # Nothing counted yet. Not null: OpenAI's schema types usage as an object, and
        # Open Responses requires the field.
        "usage": usage_object(Usage()),
        "presence_penalty": request.extra.get("presence_penalty", 0.0),
        "frequency_penalty": request.extra.get("frequency_penalty", 0.0),
    }
    if request.user is not None:
        response["user"] = request.user
    return response


class _OpenItem:
    __slots__ = ("chunks", "delta_head", "index", "item")

    def __init__(self, item: dict[str, Any], index: int) -> None:
        self.item = item
        self.index = index
        self.chunks: list[str] = []
        self.delta_head: bytes | None = None


class ResponseBuilder(ToolItems):
    """Feeds deltas into a Response object and, with ``emit``, records the events.

    Text and reasoning items close as soon as something else starts; function calls stay
    open until the end so that parallel calls may interleave their fragments.
    """

    def __init__(self, response: dict[str, Any], *, emit: bool = True, sequence: int = 0) -> None:
        self.response = response
        self.emit = emit
        self.events: list[Event] = []
        self.sequence = sequence
        # Output items finished so far; a background run saves them as they come.
        self.items_done = 0
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self._current: _OpenItem | None = None
        self._calls: dict[int, _OpenItem] = {}
        self._tools_init()

    # -- events -------------------------------------------------------------------------

    def _event(self, kind: str, payload: dict[str, Any]) -> None:
        if not self.emit:
            return
        payload["type"] = kind
        payload["sequence_number"] = self.sequence
        self.sequence += 1
        self.events.append((kind, orjson.dumps(payload)))

    def drain(self) -> list[Event]:
        events, self.events = self.events, []
        return events

    def lifecycle(self, kind: str) -> None:
        if self.emit:
            self._event(kind, {"response": self.response})

    def start(self) -> None:
        """A foreground response begins: created, and in progress at once."""
        self.response["status"] = Status.IN_PROGRESS
        self.lifecycle(EventType.CREATED)
        self.lifecycle(EventType.IN_PROGRESS)

    def queue(self) -> None:
        """A background response is created and waits for a replica to run it."""
        self.response["status"] = Status.QUEUED
        self.lifecycle(EventType.CREATED)
        self.lifecycle(EventType.QUEUED)

    def begin(self) -> None:
        """A queued background response was claimed and runs now."""
        self.response["status"] = Status.IN_PROGRESS
        self.lifecycle(EventType.IN_PROGRESS)

    # -- deltas -------------------------------------------------------------------------

    def feed(self, delta: Delta) -> None:
        if isinstance(delta, TextDelta):
            if delta.text:
                self._text(delta.text)
        elif isinstance(delta, ReasoningDelta):
            if delta.text:
                self._reasoning(delta.text)
        elif isinstance(delta, ToolCallDelta):
            self._tool_call(delta)
        elif isinstance(delta, Usage):
            self.usage = delta
        elif isinstance(delta, Finish):
            self.finish_reason = delta.reason

    def _open(self, item: dict[str, Any]) -> _OpenItem:
        output = self.response["output"]
        opened = _OpenItem(item, len(output))
        output.append(item)
        if self.emit:
            self._event(
                EventType.OUTPUT_ITEM_ADDED,
                {"output_index": opened.index, "item": _snapshot(item)},
            )
        return opened

    def add_item(self, item: dict[str, Any]) -> None:
        """An output item made whole by core itself (a compaction item): added and done."""
        self._close_current()
        opened = self._open(item)
        self._event(EventType.OUTPUT_ITEM_DONE, {"output_index": opened.index, "item": item})
        self.items_done += 1

    def _text(self, text: str) -> None:
        current = self._current
        if current is None or current.item["type"] != "message":
            self._close_current()
            item: dict[str, Any] = {
                "id": new_id("msg"),
                "type": "message",
                "status": "in_progress",
                "role": "assistant",
                "content": [],
            }
            current = self._current = self._open(item)
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            item["content"].append(part)
            if self.emit:  # (each event's payload is built only when events are kept)
                self._event(
                    EventType.CONTENT_PART_ADDED,
                    {"item_id": item["id"], "output_index": current.index, "content_index": 0, "part": dict(part)},
                )
        current.chunks.append(text)
        if not self.emit:
            return
        # The commonest event, made from bytes kept per item: the same JSON as ``_event``
        # would make (a test compares), without a dictionary and a whole encoding a token.
        head = current.delta_head
        if head is None:
            head = current.delta_head = (
                b'{"item_id":' + orjson.dumps(current.item["id"]) + b',"output_index":%d' % current.index
                + b',"content_index":0,"delta":'
            )
        self.events.append(
            (
                _TEXT_DELTA,
                head + orjson.dumps(text) + b',"logprobs":[],"type":"response.output_text.delta","sequence_number":%d}'
                % self.sequence,
            )
        )
        self.sequence += 1

    def _reasoning(self, text: str) -> None:
        current = self._current
        if current is None or current.item["type"] != "reasoning":
            self._close_current()
            item: dict[str, Any] = {
                "id": new_id("rs"),
                "type": "reasoning",
                "status": "in_progress",
                "summary": [],
                "content": [],
            }
            current = self._current = self._open(item)
            part = {"type": "reasoning_text", "text": ""}
            item["content"].append(part)
            self._event(
                EventType.CONTENT_PART_ADDED,
                {"item_id": item["id"], "output_index": current.index, "content_index": 0, "part": dict(part)},
            )
        current.chunks.append(text)
        self._event(
            _REASONING_DELTA,
            {"item_id": current.item["id"], "output_index": current.index, "content_index": 0, "delta": text},
        )

    def _tool_call(self, delta: ToolCallDelta) -> None:
        call = self._calls.get(delta.index)
        if call is None:
            self._close_current()
            ref = self.tool_refs.get(delta.name or "")
            if ref is not None:
                call = self._calls[delta.index] = self._open(self._tool_item(ref, delta.call_id))
                if delta.arguments:
                    call.chunks.append(delta.arguments)
                    self._tool_arguments(call, delta.arguments)
                return
            item = {
                "id": new_id("fc"),
                "type": "function_call",
                "status": "in_progress",
                "call_id": delta.call_id or new_id("call"),
                "name": delta.name or "",
                "arguments": "",
            }
            call = self._calls[delta.index] = self._open(item)
        elif delta.name and not call.item["name"]:
            call.item["name"] = delta.name
        if delta.arguments and call.item["type"] != "function_call":
            call.chunks.append(delta.arguments)
            self._tool_arguments(call, delta.arguments)
        elif delta.arguments:
            call.chunks.append(delta.arguments)
            self._event(
                _ARGUMENTS_DELTA,
                {"item_id": call.item["id"], "output_index": call.index, "delta": delta.arguments},
            )

    # -- closing ------------------------------------------------------------------------

    def _close_current(self, status: str = "completed") -> None:
        current, self._current = self._current, None
        if current is None:
            return
        item = current.item
        text = "".join(current.chunks)
        part = item["content"][0]
        part["text"] = text
        item["status"] = status
        if self.emit:
            if item["type"] == "message":
                self._event(
                    EventType.OUTPUT_TEXT_DONE,
                    {
                        "item_id": item["id"],
                        "output_index": current.index,
                        "content_index": 0,
                        "text": text,
                        "logprobs": [],
                    },
                )
            else:
                self._event(
                    EventType.REASONING_TEXT_DONE,
                    {"item_id": item["id"], "output_index": current.index, "content_index": 0, "text": text},
                )
            self._event(
                EventType.CONTENT_PART_DONE,
                {"item_id": item["id"], "output_index": current.index, "content_index": 0, "part": part},
            )
            self._event(EventType.OUTPUT_ITEM_DONE, {"output_index": current.index, "item": item})
        self.items_done += 1

    def _close_calls(self, status: str) -> None:
        for call in self._calls.values():
            item = call.item
            if item["type"] != "function_call":
                self._close_tool_call(call, status)
                continue
            self.client_calls += 1
            item["arguments"] = "".join(call.chunks)
            item["status"] = status
            if self.emit:
                self._event(
                    EventType.FUNCTION_CALL_ARGUMENTS_DONE,
                    {
                        "item_id": item["id"],
                        "output_index": call.index,
                        "name": item["name"],
                        "arguments": item["arguments"],
                    },
                )
                self._event(EventType.OUTPUT_ITEM_DONE, {"output_index": call.index, "item": item})
            self.items_done += 1
        self._calls.clear()

    def _close_all(self, status: str) -> None:
        self._close_current(status)
        self._close_calls(status)
        self._close_tool_items(status)

    def _usage(self) -> dict[str, Any]:
        return usage_object(self.usage or Usage())

    def end_model_call(self) -> None:
        """One model call of several in this response ended: close what it opened."""
        self._close_current()
        self._close_calls("completed")

    def complete(self) -> None:
        """The model finished: settle the status from its finish reason."""
        response = self.response
        reason = self.finish_reason
        if reason in ("length", "content_filter"):
            self._close_all("incomplete")
            response["status"] = Status.INCOMPLETE
            response["incomplete_details"] = {"reason": "max_output_tokens" if reason == "length" else "content_filter"}
        else:
            self._close_all("completed")
            response["status"] = Status.COMPLETED
        response["usage"] = self._usage()
        response["completed_at"] = int(time.time())

    def fail(self, message: str, code: str = "server_error") -> None:
        self._close_all("incomplete")
        self.response["status"] = Status.FAILED
        self.response["error"] = {"code": code if code in RESPONSE_ERROR_CODES else "server_error", "message": message}
        self.response["usage"] = self._usage()

    def cancel(self) -> None:
        """Stopped before the model finished: keep what it produced, marked incomplete."""
        self._close_all("incomplete")
        self.response["status"] = Status.CANCELLED
        self.response["usage"] = self._usage()

    def terminal(self) -> None:
        """Record the terminal event for the settled status."""
        self.lifecycle(terminal_event(self.response["status"]))


def _echo_text(text: dict[str, Any]) -> dict[str, Any]:
    """``text`` as the response shows it: a json_schema format's ``strict`` is a boolean
    (false when not sent), and its ``description`` is left out when not sent (OpenAI's
    schema has it as a string, never null)."""
    fmt = text["format"]
    if fmt.get("type") != "json_schema":
        return text
    echoed = {k: v for k, v in fmt.items() if not (k == "description" and v is None)}
    echoed["strict"] = bool(fmt.get("strict"))
    return {**text, "format": echoed}


def usage_object(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }


def _snapshot(item: dict[str, Any]) -> dict[str, Any]:
    """An item as announced by ``output_item.added``: nothing produced yet."""
    snap = dict(item)
    if "content" in snap:
        snap["content"] = []
    return snap

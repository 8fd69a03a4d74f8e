"""A stateless Responses-API upstream (DigitalOcean serverless inference, OVHcloud AI
Endpoints, vLLM): ``POST {base_url}/responses`` with ``store: false`` and the full context.

Continuo owns the state, so the upstream never sees ``previous_response_id``,
``background`` or ``conversation``: every call carries the whole chain Continuo rebuilt.
What comes back is turned into deltas only; the upstream's ids, sequence numbers and
status never reach a client (core builds its own from the deltas). The one exception is
a function call's ``call_id``: it names the call for the model and the client echoes it
in ``function_call_output``, as with every backend.

Input items keep their shape. ``id`` and ``status`` stay only where the Responses schema
requires them on input (an assistant message in output shape needs both, a reasoning item
needs its id; OpenAI's and vLLM's validators reject these items without them); elsewhere
they are ids this upstream never issued and are left out.

Tools: function tools are sent in their plain shape, namespace groups flattened into them;
hosted tools (``web_search``, ...) are passed through unless ``drop_params`` names their
type. ``drop_params`` otherwise names top-level fields of the upstream body to leave out.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from continuo.backends.base import (
    Delta,
    DeltaStream,
    Finish,
    ModelRequest,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    UpstreamError,
)
from continuo.backends.chat_format import PARAMS as CHAT_PARAMS
from continuo.backends.chat_format import Malformed, parse_usage
from continuo.backends.http import DeltaList, HTTPProvider, SSEStream, error_text
from continuo.backends.required import enforce
from continuo.backends.tools import flatten

# ModelRequest.params sent under the same name: the shared table's names, except
# reasoning_effort (sent as ``reasoning.effort``). seed, stop, top_k and
# repetition_penalty are not Responses fields but are only present when a client sent
# them; an upstream that rejects one is configured with drop_params.
PARAMS = tuple(name for name in CHAT_PARAMS if name != "reasoning_effort")

# OpenAI's event names first; Open Responses calls raw reasoning ``response.reasoning.delta``.
REASONING_TEXT_EVENTS = ("response.reasoning_text.delta", "response.reasoning.delta")
TEXT_EVENTS = ("response.output_text.delta", "response.refusal.delta")
TERMINAL_EVENTS = ("response.completed", "response.incomplete")


# -- the request -------------------------------------------------------------------------


def upstream_item(item: dict[str, Any]) -> dict[str, Any]:
    out = dict(item)
    kind = out.get("type")
    if kind == "message" and out.get("role") == "assistant":
        return out
    out.pop("status", None)
    if kind != "reasoning":
        out.pop("id", None)
    return out


def upstream_tools(tools: list[dict[str, Any]], dropped: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Function tools (namespaces flattened) and the hosted tools not named in ``dropped``."""
    left_out = set(dropped)
    return [
        {"type": "function", **spec} if spec is not None else tool
        for spec, tool in flatten(tools)
        if spec is not None or tool.get("type") not in left_out
    ]


def build_payload(request: ModelRequest, drop_params: Iterable[str] = ()) -> dict[str, Any]:
    dropped = list(drop_params)
    body: dict[str, Any] = {
        "model": request.model,
        "input": [upstream_item(item) for item in request.items],
    }
    if request.instructions:
        body["instructions"] = request.instructions
    tools = upstream_tools(request.tools, dropped)
    if tools:
        body["tools"] = tools
        if request.tool_choice is not None:
            body["tool_choice"] = request.tool_choice
        if "parallel_tool_calls" in request.params:
            body["parallel_tool_calls"] = request.params["parallel_tool_calls"]
    fmt = request.text_format
    if fmt and fmt.get("type") not in (None, "text"):
        body["text"] = {"format": {k: v for k, v in fmt.items() if v is not None}}
    reasoning = {
        key: request.params[name]
        for key, name in (("effort", "reasoning_effort"), ("summary", "reasoning_summary"))
        if request.params.get(name) is not None
    }
    if reasoning:
        body["reasoning"] = reasoning
    for name in PARAMS:
        if name in request.params:
            body[name] = request.params[name]
    body["store"] = False
    if request.stream:
        body["stream"] = True
    for name in dropped:
        body.pop(name, None)
    if "tools" not in body:
        body.pop("tool_choice", None)
        body.pop("parallel_tool_calls", None)
    return body


# -- the answer --------------------------------------------------------------------------


def _texts(parts: Any, *kinds: str) -> list[str]:
    out = []
    for part in parts or ():
        if isinstance(part, dict) and part.get("type") in kinds:
            value = part.get("refusal") if part.get("type") == "refusal" else part.get("text")
            if isinstance(value, str) and value:
                out.append(value)
    return out


def item_deltas(item: dict[str, Any]) -> list[Delta]:
    """The deltas of one whole message or reasoning item. Function calls go through
    ``Translator``; hosted tool calls (web search and the like) have no delta and are
    left out."""
    kind = item.get("type")
    if kind == "message":
        return [TextDelta(text) for text in _texts(item.get("content"), "output_text", "refusal")]
    if kind == "reasoning":
        text = "".join(_texts(item.get("content"), "reasoning_text")) or "\n\n".join(
            _texts(item.get("summary"), "summary_text")
        )
        return [ReasoningDelta(text)] if text else []
    return []


def _error_text(error: Any, fallback: str) -> str:
    return error_text(error, fallback)


def _object(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Malformed(f"{what} is not an object")
    return value


class Translator:
    """Upstream events in, deltas out. ``output_index`` tells items apart; an item whose
    pieces never streamed (some servers only send ``output_item.done`` or the final
    response) is taken whole from wherever it first appears complete."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.done = False
        self._covered: set[int] = set()  # text or reasoning items that produced deltas
        self._calls: set[int] = set()  # function calls announced
        self._named: set[int] = set()  # function calls whose name arrived
        self._arguments: set[int] = set()  # function calls whose arguments arrived
        self._reasoning_source: dict[int, str] = {}
        self._summary_part: dict[int, int] = {}

    def failed(self, message: str) -> UpstreamError:
        return UpstreamError(f"provider '{self.provider}' failed: {message}")

    def feed(self, event: dict[str, Any]) -> list[Delta]:
        kind = event.get("type")
        index = event.get("output_index", 0)
        if not isinstance(index, int):
            index = 0
        delta = event.get("delta")
        if kind in TEXT_EVENTS:
            if isinstance(delta, str) and delta:
                self._covered.add(index)
                return [TextDelta(delta)]
            return []
        if kind in REASONING_TEXT_EVENTS:
            return self._reasoning(index, "text", delta, None)
        if kind == "response.reasoning_summary_text.delta":
            return self._reasoning(index, "summary", delta, event.get("summary_index", 0))
        if kind == "response.output_item.added":
            item = _object(event.get("item"), "item")
            return self._call(index, item) if item.get("type") == "function_call" else []
        if kind == "response.function_call_arguments.delta":
            if not isinstance(delta, str) or not delta:
                return []
            self._calls.add(index)
            self._arguments.add(index)
            return [ToolCallDelta(index, arguments=delta)]
        if kind == "response.function_call_arguments.done":
            return self._call(index, {"arguments": event.get("arguments")})
        if kind == "response.output_item.done":
            return self._item_done(index, _object(event.get("item"), "item"))
        if kind in TERMINAL_EVENTS:
            self.done = True
            return self.final(_object(event.get("response"), "response"))
        if kind == "response.failed":
            response = _object(event.get("response"), "response")
            raise self.failed(_error_text(response.get("error"), "the response failed"))
        if kind == "error":
            raise self.failed(_error_text(event.get("error") or event, "error event"))
        return []

    def _reasoning(self, index: int, source: str, delta: Any, part: Any) -> list[Delta]:
        # A server that streams both the raw reasoning and its summary of one item would
        # say the same thing twice: the first kind seen wins.
        if self._reasoning_source.setdefault(index, source) != source:
            return []
        if not isinstance(delta, str) or not delta:
            return []
        out: list[Delta] = []
        if source == "summary":
            last = self._summary_part.get(index)
            if last is not None and last != part:
                out.append(ReasoningDelta("\n\n"))
            self._summary_part[index] = part
        self._covered.add(index)
        out.append(ReasoningDelta(delta))
        return out

    def _call(self, index: int, item: dict[str, Any]) -> list[Delta]:
        """Whatever is new about a function call: its announcement, or the name and
        arguments of one whose pieces came out of order or not at all."""
        name = item.get("name") or None
        arguments = item.get("arguments") or ""
        call_id = item.get("call_id")
        if not isinstance(name, (str, type(None))) or not isinstance(arguments, str):
            raise Malformed("a function call's name or arguments is not a string")
        if not isinstance(call_id, (str, type(None))):
            raise Malformed("a function call's call_id is not a string")
        if index not in self._calls:
            self._calls.add(index)
            if name:
                self._named.add(index)
            if arguments:
                self._arguments.add(index)
            return [ToolCallDelta(index, call_id, name, arguments)]
        out: list[Delta] = []
        if name and index not in self._named:
            self._named.add(index)
            out.append(ToolCallDelta(index, name=name))
        if arguments and index not in self._arguments:
            self._arguments.add(index)
            out.append(ToolCallDelta(index, arguments=arguments))
        return out

    def _item_done(self, index: int, item: dict[str, Any]) -> list[Delta]:
        if item.get("type") == "function_call":
            return self._call(index, item)
        if index in self._covered:
            return []
        self._covered.add(index)
        return item_deltas(item)

    def final(self, response: dict[str, Any]) -> list[Delta]:
        """What the finished response adds: items not seen yet, usage, the finish reason."""
        if response.get("status") == "failed":
            raise self.failed(_error_text(response.get("error"), "the response failed"))
        deltas: list[Delta] = []
        output = response.get("output")
        if output is not None and not isinstance(output, list):
            raise Malformed("output is not an array")
        for index, item in enumerate(output or ()):
            deltas.extend(self._item_done(index, _object(item, "output[]")))
        if response.get("usage"):
            deltas.append(parse_usage(response["usage"]))
        deltas.append(Finish(self._finish_reason(response)))
        return deltas

    def _finish_reason(self, response: dict[str, Any]) -> str:
        if response.get("status") == "incomplete":
            reason = _object(response.get("incomplete_details"), "incomplete_details").get("reason")
            return "content_filter" if reason == "content_filter" else "length"
        return "tool_calls" if self._calls else "stop"


def response_deltas(provider: str, body: dict[str, Any]) -> list[Delta]:
    """The deltas of a whole (non-streamed) Response object."""
    if body.get("error"):
        raise UpstreamError(f"provider '{provider}' failed: {_error_text(body['error'], 'unknown error')}")
    if not isinstance(body.get("output"), list):
        raise UpstreamError(f"provider '{provider}' answered with JSON that is not a Response")
    try:
        return Translator(provider).final(body)
    except Malformed as exc:
        raise UpstreamError(f"provider '{provider}' answered with a malformed Response: {exc}") from None


class _EventStream(SSEStream):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.translator = Translator(self.provider)

    def deltas(self, name: str | None, event: dict[str, Any], data: bytes) -> list[Delta]:
        if name and "type" not in event:
            event["type"] = name
        try:
            deltas = self.translator.feed(event)
        except Malformed as exc:
            raise UpstreamError(f"provider '{self.provider}' sent a malformed stream event: {exc}") from None
        self.over = self.translator.done
        return deltas

    def end(self) -> None:
        if not self.translator.done:
            raise UpstreamError(f"provider '{self.provider}' ended the stream before finishing")


class ResponsesBackend(HTTPProvider):
    def payload(self, request: ModelRequest) -> dict[str, Any]:
        return build_payload(request, self.config.drop_params)

    async def open(self, request: ModelRequest) -> DeltaStream:
        response = await self.post("/responses", self.payload(request))
        content_type = response.headers.get("content-type", "")
        stream: DeltaStream
        if request.stream and "json" not in content_type and "html" not in content_type:
            stream = _EventStream(self.name, response, self.config.max_response_bytes)
        else:
            # Not streamed, or an upstream that answered a stream with one JSON object (or a
            # proxy's HTML page with a 200, which read_json turns into a 502).
            stream = DeltaList(response_deltas(self.name, await self.read_json(response)))
        return enforce(self.name, request, stream)

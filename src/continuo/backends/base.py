"""The contract between core and a model backend.

A backend receives a ``ModelRequest`` (the full, normalized context as Responses items)
and yields ``Delta`` values. It never builds Responses events or output items: core does
that once, from these deltas, for every backend.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(slots=True)
class ModelRequest:
    """Everything a backend needs for one model call.

    ``items`` are Responses input items (messages, function_call, function_call_output,
    reasoning), already resolved: no item_reference, chain already expanded.
    ``params`` holds sampling and pass-through options by their Responses names
    (temperature, top_p, max_output_tokens, seed, stop, top_k, repetition_penalty,
    presence_penalty, frequency_penalty, user, prompt_cache_key, reasoning_effort,
    parallel_tool_calls); absent keys were not sent.
    """

    model: str
    items: list[dict[str, Any]]
    instructions: str | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: Any = None
    text_format: dict[str, Any] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    stream: bool = True


@dataclass(slots=True)
class TextDelta:
    text: str


@dataclass(slots=True)
class ReasoningDelta:
    text: str


@dataclass(slots=True)
class ToolCallDelta:
    """A fragment of a function call. ``index`` tells parallel calls apart; ``call_id``
    and ``name`` arrive on the first fragment of a call (later ones may leave them empty)."""

    index: int
    call_id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(slots=True)
class Finish:
    """Why the model stopped: ``stop``, ``length``, ``tool_calls`` or ``content_filter``."""

    reason: str


Delta = TextDelta | ReasoningDelta | ToolCallDelta | Usage | Finish


class UpstreamError(Exception):
    """The model could not be reached or refused the request.

    ``status`` is the HTTP status Continuo should answer with when nothing was streamed
    yet: the upstream's own 4xx, 502 for a failure, 504 for a timeout.
    """

    def __init__(self, message: str, *, status: int = 502, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class DeltaStream(Protocol):
    """An opened model call. ``batches`` yields its deltas a list at a time, as they came
    (every delta of one read from the upstream together: the run driver takes them so, one
    resumption of each layer a read instead of one a delta); iterating yields them one at
    a time; ``aclose`` releases the upstream (closing the connection if it is still
    streaming)."""

    def __aiter__(self) -> AsyncIterator[Delta]: ...

    def batches(self) -> AsyncIterator[list[Delta]]: ...

    async def aclose(self) -> None: ...


class InBatches:
    """A delta stream that makes its deltas in batches: iterating flattens them."""

    # A call that is already over (its whole answer read before ``open`` returned): the
    # deltas that iterating replays, in one batch. Whoever watches calls (observability)
    # reads them at once instead of wrapping the iteration.
    replay: list[Delta] | None = None

    def batches(self) -> AsyncIterator[list[Delta]]:
        raise NotImplementedError

    async def __aiter__(self) -> AsyncIterator[Delta]:
        async for batch in self.batches():
            for delta in batch:
                yield delta


class OneByOne:
    """A delta stream that makes its deltas one at a time: batches of one."""

    def __aiter__(self) -> AsyncIterator[Delta]:
        raise NotImplementedError

    async def batches(self) -> AsyncIterator[list[Delta]]:
        async for delta in self:
            yield [delta]


class Backend(Protocol):
    name: str

    async def open(self, request: ModelRequest) -> DeltaStream:
        """Start the call. Raises ``UpstreamError`` if the upstream fails before any
        delta (connection refused, HTTP error status); errors after that are raised
        from iteration."""
        ...

    async def aclose(self) -> None:
        """Release shared resources (connection pools, models)."""
        ...


class CountsTokens(Protocol):
    """An optional capability: a backend that can count the input tokens of a request
    exactly (its model's own tokenizer and chat template). ``None``: it cannot, this time.

    A backend may also have a ``context_window`` attribute (tokens, or ``None`` when not
    known). Core looks for both by name and never asks which backend it is."""

    async def count_tokens(self, request: ModelRequest) -> int | None: ...

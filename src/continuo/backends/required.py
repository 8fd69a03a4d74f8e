"""A tool call the request required, checked on the answer.

``tool_choice: "required"`` (or a named function) is a promise OpenAI keeps: the answer
is a function call. Some upstreams ignore it (llama.cpp's server does unless started with
its tool-call templates) and answer in text. Sending the same request again would get the
same answer, so Continuo does not retry: it ends the call with an ``UpstreamError`` that
names the provider. Text that comes before the first call is held back until a call
arrives, so a streamed answer that breaks the promise shows no text before it fails.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from continuo.backends.base import (
    Delta,
    DeltaStream,
    Finish,
    InBatches,
    ModelRequest,
    TextDelta,
    ToolCallDelta,
    UpstreamError,
)
from continuo.backends.tools import flatten


def required_call(request: ModelRequest) -> tuple[bool, str | None]:
    """Whether the request requires a function call, and the name it requires (if any)."""
    choice = request.tool_choice
    if not any(spec is not None for spec, _ in flatten(request.tools)):
        return False, None
    if choice == "required":
        return True, None
    if isinstance(choice, dict):
        if choice.get("type") == "function" and isinstance(choice.get("name"), str):
            return True, choice["name"]
        if choice.get("type") == "allowed_tools" and choice.get("mode") == "required":
            return True, None
    return False, None


class RequiredCall(InBatches):
    """Wraps a model call whose request requires a function call."""

    def __init__(self, provider: str, inner: DeltaStream, name: str | None) -> None:
        self.provider = provider
        self.inner = inner
        self.name = name

    async def batches(self) -> AsyncIterator[list[Delta]]:
        held: list[Delta] = []
        names: dict[int, str] = {}
        async for batch in self.inner.batches():
            out: list[Delta] = []
            try:
                for delta in batch:
                    if isinstance(delta, ToolCallDelta):
                        if delta.name:
                            names[delta.index] = names.get(delta.index, "") + delta.name
                        out += held
                        held.clear()
                        out.append(delta)
                    elif isinstance(delta, TextDelta) and not names:
                        held.append(delta)
                    else:
                        if isinstance(delta, Finish) and delta.reason not in ("length", "content_filter"):
                            self._check(names)
                        out.append(delta)
            except UpstreamError:
                if out:  # what came before the failure, as it would have one by one
                    yield out
                raise
            if out:
                yield out

    def _check(self, names: dict[int, str]) -> None:
        if not names:
            raise UpstreamError(
                f"provider '{self.provider}' answered without the function call that tool_choice requires "
                "(the upstream ignored tool_choice)"
            )
        if self.name is not None and any(name != self.name for name in names.values()):
            called = ", ".join(sorted(set(names.values())))
            raise UpstreamError(
                f"provider '{self.provider}' called {called} although tool_choice requires {self.name} "
                "(the upstream ignored tool_choice)"
            )

    async def aclose(self) -> None:
        await self.inner.aclose()


def enforce(provider: str, request: ModelRequest, stream: DeltaStream) -> DeltaStream:
    """``stream``, checked for the call the request requires (unchanged if none is)."""
    required, name = required_call(request)
    return RequiredCall(provider, stream, name) if required else stream

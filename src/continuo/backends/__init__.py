"""Model backends: each turns a ``ModelRequest`` into a stream of deltas."""

from __future__ import annotations

from continuo.backends.base import Backend
from continuo.config import ProviderConfig


def create_backend(config: ProviderConfig) -> Backend:
    if config.type == "chat_completions":
        from continuo.backends.chat_completions import ChatCompletionsBackend

        return ChatCompletionsBackend(config)
    if config.type == "responses":
        from continuo.backends.responses import ResponsesBackend

        return ResponsesBackend(config)
    if config.type == "local":
        from continuo.backends.local import LocalBackend

        return LocalBackend(config)
    raise ValueError(f"provider type {config.type!r} is not available in this build")

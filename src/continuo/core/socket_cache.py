"""The connection-local cache of a WebSocket: the contexts of its ``store: false`` responses.

A response that is not stored can still be continued with ``previous_response_id`` on the
socket that made it, because the socket keeps that response's whole context (everything
the model saw, then what it answered) in memory. Nothing of it outlives the socket.

The memory is bounded per socket: at most ``max_entries`` contexts, whose sizes together
stay under ``max_bytes``. A context's size is counted as the JSON bytes it arrived and left
as (the parent's size, plus the ``response.create`` frame, plus the terminal event, which
carries the whole response), so the count is an upper bound on the JSON the cache holds;
contexts of one chain share their items, so the real memory is usually far less. The
oldest context goes first when a bound is reached; a context larger than ``max_bytes`` on
its own is not kept at all (continuing it answers ``previous_response_not_found``, as for
any response the cache no longer holds).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True, frozen=True)
class CachedContext:
    items: list[dict[str, Any]]
    size: int


class ContextCache:
    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[str, CachedContext] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, response_id: object) -> bool:
        return response_id in self._entries

    def get(self, response_id: str) -> CachedContext | None:
        entry = self._entries.get(response_id)
        if entry is not None:
            self._entries.move_to_end(response_id)
        return entry

    def put(self, response_id: str, items: list[dict[str, Any]], size: int) -> bool:
        """Keep a context; False when it is too large to keep at all."""
        self.evict(response_id)
        if size > self.max_bytes or self.max_entries <= 0:
            return False
        while self._entries and (len(self._entries) >= self.max_entries or self.bytes + size > self.max_bytes):
            _, oldest = self._entries.popitem(last=False)
            self.bytes -= oldest.size
        self._entries[response_id] = CachedContext(items, size)
        self.bytes += size
        return True

    def evict(self, response_id: str) -> None:
        entry = self._entries.pop(response_id, None)
        if entry is not None:
            self.bytes -= entry.size

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0

"""Wake-ups between the code that writes a run's progress and the code that follows it.

A reader subscribes *before* it looks at the store, so a notification that lands between
its look and its wait is never lost. A notification is only a hint: readers always read
the store, and they also wake up on a timeout, so a missed hint costs latency, not data.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import TracebackType
from typing import Protocol


class Signal:
    def __init__(self, owner: LocalNotifier, channel: str) -> None:
        self.owner = owner
        self.channel = channel
        self.future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        owner.waiters[channel].add(self.future)

    async def wait(self, seconds: float) -> None:
        """Until notified, or ``seconds`` have passed."""
        await asyncio.wait({self.future}, timeout=seconds)

    def __enter__(self) -> Signal:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        waiters = self.owner.waiters.get(self.channel)
        if waiters is not None:
            waiters.discard(self.future)
            if not waiters:
                del self.owner.waiters[self.channel]


class Notifier(Protocol):
    def listen(self, channel: str) -> Signal: ...

    async def notify(self, channel: str) -> None:
        """Wake this channel's readers on every replica."""

    def wake(self, channel: str) -> None:
        """Wake this channel's readers in this process only."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class LocalNotifier:
    """Within one process. Other replicas learn of changes by their timeouts."""

    def __init__(self) -> None:
        self.waiters: defaultdict[str, set[asyncio.Future[None]]] = defaultdict(set)

    def listen(self, channel: str) -> Signal:
        return Signal(self, channel)

    async def notify(self, channel: str) -> None:
        self.wake(channel)

    def wake(self, channel: str) -> None:
        for future in self.waiters.pop(channel, ()):
            if not future.done():
                future.set_result(None)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

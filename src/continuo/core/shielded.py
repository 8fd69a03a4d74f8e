"""``asyncio.shield``, started at once.

``asyncio.shield(coro)`` wraps the coroutine in a task before it runs a line: the task's
first step, its end and the shield's own future each wait for a turn of the event loop,
three turns in all, even when the coroutine never waits for anything (storing a response
in SQLite, closing an upstream call whose body was read). ``shielded`` runs the first
step at once, in the caller; only a coroutine that does wait gets a task, shielded as
before, so a caller cancelled meanwhile still cannot stop it halfway. A foreground JSON
answer went from ten turns of the loop to three with it (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Awaitable, Generator
from typing import Any, TypeVar

T = TypeVar("T")


async def shielded(awaitable: Awaitable[T]) -> T:
    steps = awaitable.__await__()
    try:
        waiting = steps.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    rest = asyncio.get_running_loop().create_task(_rest(steps, waiting))
    return await asyncio.shield(rest)


async def _rest(steps: Generator[Any, Any, T], waiting: Any) -> T:
    return await _resume(steps, waiting)


@types.coroutine
def _resume(steps: Generator[Any, Any, T], waiting: Any) -> Generator[Any, Any, T]:
    """The rest of a started coroutine, driven by the task that awaits this: what the
    coroutine waits on is passed up to the task, what the task sends or throws goes down."""
    while True:
        try:
            sent = yield waiting
        except GeneratorExit:
            steps.close()
            raise
        except BaseException as exc:
            try:
                waiting = steps.throw(exc)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
        else:
            try:
                waiting = steps.send(sent)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

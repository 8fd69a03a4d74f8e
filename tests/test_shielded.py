"""core/shielded.py: ``asyncio.shield`` that starts the coroutine at once."""

from __future__ import annotations

import asyncio

import pytest

from continuo.core.shielded import shielded


async def test_a_coroutine_that_never_waits_runs_in_the_caller() -> None:
    tasks = len(asyncio.all_tasks())
    seen: list[int] = []

    async def quick() -> int:
        seen.append(len(asyncio.all_tasks()))
        return 7

    assert await shielded(quick()) == 7
    assert seen == [tasks]  # no task of its own


async def test_a_cancelled_caller_does_not_stop_a_coroutine_that_waits() -> None:
    release = asyncio.Event()
    done: list[str] = []

    async def slow() -> str:
        done.append("started")
        await release.wait()
        await asyncio.sleep(0)
        done.append("finished")
        return "kept"

    caller = asyncio.get_running_loop().create_task(shielded(slow()))
    await asyncio.sleep(0)
    assert done == ["started"]
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    release.set()
    for _ in range(10):
        await asyncio.sleep(0)
    assert done == ["started", "finished"]


async def test_errors_reach_the_caller_before_and_after_waiting() -> None:
    async def at_once() -> None:
        raise ValueError("now")

    async def later() -> None:
        await asyncio.sleep(0)
        raise KeyError("later")

    with pytest.raises(ValueError, match="now"):
        await shielded(at_once())
    with pytest.raises(KeyError, match="later"):
        await shielded(later())


async def test_values_come_back_after_waiting() -> None:
    async def value() -> list[int]:
        await asyncio.sleep(0.001)
        return [1, 2]

    assert await shielded(value()) == [1, 2]

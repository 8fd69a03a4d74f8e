"""Waiting for something observable, never for a fixed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


def wait_until(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Poll ``check`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


async def wait_until_async(check: Callable[[], Awaitable[Any]], seconds: float = 15.0) -> Any:
    """``wait_until`` for a check that must run on the event loop."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value := await check():
            return value
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")

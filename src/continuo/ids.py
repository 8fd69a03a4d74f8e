"""Identifiers in OpenAI's shapes (``resp_…``, ``msg_…``, ``fc_…``, ``rs_…``)."""

import os
import threading
import time


def new_id(prefix: str) -> str:
    """``prefix_`` and 48 hex digits: the time in microseconds (14 digits), then 136 random
    bits. OpenAI's ids also begin with the time; here it keeps each new row at the end of
    the id indexes, where SQLite's pages are in memory, instead of at a random place in
    them (a stored response cost 0.101 ms of SQLite's time with random ids, 0.058 ms with
    these, at 50,000 stored responses: docs/performance.md)."""
    return f"{prefix}_{time.time_ns() // 1000:014x}{_random_hex17()}"


# Random bytes from the kernel's CSPRNG 4 KiB at a time: os.urandom is a system call, and a
# response took four of them (its id and its items'). A forked child starts a pool of its
# own, so two processes never hand out the same bytes.
_POOL = b""
_USED = 0
_POOL_LOCK = threading.Lock()


def _random_hex17() -> str:
    global _POOL, _USED
    with _POOL_LOCK:
        if _USED + 17 > len(_POOL):
            _POOL, _USED = os.urandom(4096), 0
        start = _USED
        _USED += 17
        return _POOL[start:_USED].hex()


def _forget_pool() -> None:
    global _POOL, _USED
    _POOL, _USED = b"", 0


os.register_at_fork(after_in_child=_forget_pool)


ITEM_PREFIX = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "reasoning": "rs",
    "custom_tool_call": "ctc",
    "custom_tool_call_output": "ctco",
    "compaction": "cmp",
    "mcp_list_tools": "mcpl",
    "mcp_call": "mcp",
    "mcp_approval_request": "mcpr",
    "mcp_approval_response": "mcpa",
}


def new_item_id(item_type: str) -> str:
    return new_id(ITEM_PREFIX.get(item_type, "item"))


# The longest ids the schema holds (``responses.id`` and ``items.item_id``), on every
# database alike.
RESPONSE_ID_MAX = 64
ITEM_ID_MAX = 128


def well_formed(value: str, max_length: int = RESPONSE_ID_MAX) -> bool:
    """Whether ``value`` could be a stored id: not empty, not longer than the column, and
    free of control characters (PostgreSQL refuses NUL in text). An id that is not well
    formed cannot exist, so looking it up answers "not found" without asking the database."""
    return 0 < len(value) <= max_length and not any(ord(c) < 32 or 127 <= ord(c) < 160 for c in value)

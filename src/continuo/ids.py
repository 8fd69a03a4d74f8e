"""Identifiers in OpenAI's shapes (``resp_…``, ``msg_…``, ``fc_…``, ``rs_…``)."""

import os
import time


def new_id(prefix: str) -> str:
    """``prefix_`` and 48 hex digits: the time in microseconds (14 digits), then 136 random
    bits. OpenAI's ids also begin with the time; here it keeps each new row at the end of
    the id indexes, where SQLite's pages are in memory, instead of at a random place in
    them (a stored response cost 0.101 ms of SQLite's time with random ids, 0.058 ms with
    these, at 50,000 stored responses: docs/performance.md). The random part is read from
    ``os.urandom`` as ``secrets.token_hex`` does, without its three Python calls."""
    return f"{prefix}_{time.time_ns() // 1000:014x}{os.urandom(17).hex()}"


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

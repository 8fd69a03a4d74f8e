"""A streamed create read off the wire and held to the spec and the stream contract (the
MCP and coding-agent tests)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.support.servers import ServerThread
from tests.support.spec_check import validate_event

TERMINAL = {"response.completed", "response.failed", "response.incomplete", "response.cancelled"}


def stream_events(server: ServerThread, **body: Any) -> list[dict[str, Any]]:
    """Every event of a streamed create, as sent, checked against the spec and the
    stream contract."""
    events = []
    with httpx.stream("POST", f"{server.url}/v1/responses", json={**body, "stream": True}, timeout=30) as answer:
        assert answer.status_code == 200
        for line in answer.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    for event in events:
        validate_event(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds.count("response.created") == 1
    assert sum(k in TERMINAL for k in kinds) == 1 and kinds[-1] in TERMINAL
    # Every item's output_item.done equals the final output at its index.
    done = {e["output_index"]: e["item"] for e in events if e["type"] == "response.output_item.done"}
    output = events[-1]["response"]["output"]
    assert done == dict(enumerate(output))
    for e in events:
        if e["type"] == "response.output_item.added":
            assert e["item"].get("arguments", "") == "" and e["item"].get("input", "") == ""
    return events

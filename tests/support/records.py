"""Stored records for the store's tests: a response and its items, as core hands them over."""

from __future__ import annotations

import time
from typing import Any


def response(response_id: str, previous: str | None = None, text_: str = "out", **extra: Any) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "previous_response_id": previous,
        "output": [
            {
                "id": f"msg_out_{response_id}",
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text_}],
            }
        ],
        **extra,
    }


def user(item_id: str, text_: str) -> dict[str, Any]:
    return {"id": item_id, "type": "message", "role": "user", "content": [{"type": "input_text", "text": text_}]}


def texts(items: list[dict[str, Any]]) -> list[str]:
    return [item["content"][0]["text"] for item in items]

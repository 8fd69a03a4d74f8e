"""Errors in OpenAI's shape, raised anywhere below the HTTP layer.

The HTTP layer turns an ``APIError`` into ``{"error": {"message", "type", "param", "code"}}``
with ``status``; no other layer knows about HTTP beyond that number.
"""

from __future__ import annotations

from typing import Any


class APIError(Exception):
    status = 500
    type = "server_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(APIError):
    status = 400
    type = "invalid_request_error"


class NotFound(APIError):
    status = 404
    type = "invalid_request_error"


class UpstreamFailure(APIError):
    """The model behind a provider failed (502) or timed out (504)."""

    status = 502
    type = "server_error"


def conversation_not_found(conversation_id: str, param: str = "conversation_id") -> NotFound:
    return NotFound(f"Conversation with id '{conversation_id}' not found.", param=param)


def conversation_unavailable(conversation_id: str, reason: str) -> APIError:
    """Why a response cannot run on a conversation: it is ``missing`` or ``locked``."""
    if reason == "missing":
        return conversation_not_found(conversation_id, param="conversation")
    # OpenAI's answer while another response is in progress on the conversation.
    return InvalidRequest(
        "Another process is currently operating on this conversation. Please retry in a few seconds.",
        param="conversation",
        code="conversation_locked",
    )
